// command.cpp — see command.h.
#include "ppo/reward/command.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <iterator>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/core/check.h"
#include "common/core/process.h"
#include "common/train/loop.h"
#include "ppo/reward/rules.h"

namespace rlhf {
namespace {

// One finite number per line, `rows` lines (a final newline optional). "" = fine.
std::string parse_answers(const std::string& text, size_t rows, std::vector<double>& out) {
  size_t pos = 0, line = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string s = text.substr(pos, end - pos);
    pos = end + 1;
    ++line;
    const size_t a = s.find_first_not_of(" \t\r"), b = s.find_last_not_of(" \t\r");
    s = a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
    char* stop = nullptr;
    errno = 0;
    const double v = s.empty() ? NAN : std::strtod(s.c_str(), &stop);
    const bool decimal = s.find_first_not_of("0123456789+-.eE") == std::string::npos;  // no hex
    if (s.empty() || !decimal || stop != s.c_str() + s.size() || errno == ERANGE || !std::isfinite(v))
      return fmt::format("stdout line {}: '{}' is not one finite number (expected one decimal number "
                         "per line, one line per JSON line of stdin)", line, s.substr(0, 80));
    if (std::abs(v) > kMaxRewardMagnitude)
      return fmt::format("stdout line {}: {} is beyond ±{:g} (rewards this large overflow the "
                         "returns and advantages; scale them down)", line, s.substr(0, 80), kMaxRewardMagnitude);
    out.push_back(v);
  }
  if (out.size() != rows)
    return fmt::format("it answered {} lines for {} rows (expected one number per line, one line "
                       "per JSON line of stdin)", out.size(), rows);
  return {};
}

}  // namespace

CommandOutcome run_reward_command(const std::string& command, double timeout_s,
                                  const std::string& input, size_t rows) {
  const std::string who = fmt::format("ppo.reward_command '{}'", command);
  const ShellResult sh = run_shell(command, input, timeout_s, who);
  CommandOutcome r;
  if (sh.timed_out) {
    r.error = fmt::format("{} did not answer {} rows within ppo.reward_timeout_s = {} s (killed){}", who, rows,
                          timeout_s, sh.stderr_suffix());
    return r;
  }
  if (!sh.exited_ok()) {
    r.error = fmt::format("{} {}", who, sh.exit_text());
    return r;
  }
  const std::string bad = parse_answers(sh.out, rows, r.scores);
  if (!bad.empty()) {
    r.scores.clear();
    r.error = fmt::format("{}: {}{}", who, bad, sh.stderr_suffix());
  }
  return r;
}

std::vector<std::string> reward_command_lines(const Rollout& ro, const PromptData& data,
                                              const std::vector<int64_t>& idx, const Tokenizer& tok) {
  const RewardRows r = reward_rows(ro, data, idx, tok);
  std::vector<std::string> lines;
  for (size_t b = 0; b < idx.size(); ++b) {
    const nlohmann::json j = {{"prompt", r.prompts[b]}, {"response", r.responses[b]}, {"eos", bool(r.eos[b])}};
    lines.push_back(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  }
  return lines;
}

std::vector<torch::Tensor> command_scores(const std::string& command, double timeout_s, int64_t rows_per_run,
                                          const std::vector<RolloutBatch>& batches, const PromptData& data,
                                          const Tokenizer& tok, Communicator& comm) {
  std::vector<std::string> lines;  // one JSON line per row
  for (const RolloutBatch& b : batches) {
    std::vector<std::string> lb = reward_command_lines(*b.ro, data, *b.idx, tok);
    lines.insert(lines.end(), std::make_move_iterator(lb.begin()), std::make_move_iterator(lb.end()));
  }
  const size_t n = lines.size();
  const size_t per = rows_per_run > 0 ? static_cast<size_t>(rows_per_run) : std::max<size_t>(1, n);
  CommandOutcome all;
  for (size_t a = 0; a < n; a += per) {
    const size_t e = std::min(n, a + per);
    std::string input;
    for (size_t i = a; i < e; ++i) input += lines[i];
    CommandOutcome r = run_reward_command(command, timeout_s, input, e - a);
    if (!r.error.empty()) {
      all.scores.clear();
      all.error = per < n ? fmt::format("rows [{}, {}) of {}: {}", a, e, n, r.error) : r.error;
      break;
    }
    all.scores.insert(all.scores.end(), r.scores.begin(), r.scores.end());
  }
  return collective_scores(all, batches, comm);
}

std::vector<torch::Tensor> collective_scores(const CommandOutcome& r, const std::vector<RolloutBatch>& batches,
                                             Communicator& comm) {
  const std::vector<std::string> errors = comm.all_gather_string(r.error);
  for (size_t k = 0; k < errors.size(); ++k)
    if (!errors[k].empty())
      throw StepAbortedError(comm.world_size() > 1 ? fmt::format("rank {}: {}", k, errors[k]) : errors[k]);
  size_t rows = 0;
  for (const RolloutBatch& b : batches) rows += static_cast<size_t>(b.ro->batch());
  RLHF_CHECK(rows == r.scores.size(), "collective_scores: {} scores for {} rows", r.scores.size(), rows);
  std::vector<torch::Tensor> out;
  auto at = r.scores.begin();
  for (const RolloutBatch& b : batches) {
    const std::vector<float> s(at, at + b.ro->batch());
    out.push_back(torch::tensor(s, torch::kFloat).to(b.ro->tokens.device()));  // [B_i]
    at += b.ro->batch();
  }
  return out;
}

}  // namespace rlhf
