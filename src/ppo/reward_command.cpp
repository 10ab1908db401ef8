// reward_command.cpp — see reward_command.h.
#include "ppo/reward_command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/core/check.h"
#include "common/train/loop.h"
#include "ppo/reward_rules.h"

extern char** environ;

namespace rlhf {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kStderrTail = 2000;  // bytes of the program's stderr kept for an error

// Both ends of a pipe, closed on destruction (and on exec in the child, unless dup2'ed).
struct Pipe {
  int r = -1, w = -1;
  Pipe() { RLHF_CHECK(pipe2(fds_, O_CLOEXEC) == 0, "pipe2: {}", std::strerror(errno)); r = fds_[0]; w = fds_[1]; }
  ~Pipe() { close_r(); close_w(); }
  void close_r() { if (r >= 0) ::close(r); r = -1; }
  void close_w() { if (w >= 0) ::close(w); w = -1; }
 private:
  int fds_[2];
};

// SIGPIPE ignored while this lives (a program that exits without reading all of stdin must not
// kill the trainer); the previous disposition comes back after.
struct IgnoreSigpipe {
  struct sigaction old {};
  IgnoreSigpipe() {
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &old);
  }
  ~IgnoreSigpipe() { sigaction(SIGPIPE, &old, nullptr); }
};

// /bin/sh -c command in its own process group, stdin/stdout/stderr on the pipes.
pid_t spawn_shell(const std::string& command, Pipe& in, Pipe& out, Pipe& err) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in.r, 0);
  posix_spawn_file_actions_adddup2(&fa, out.w, 1);
  posix_spawn_file_actions_adddup2(&fa, err.w, 2);
  posix_spawnattr_t at;
  posix_spawnattr_init(&at);
  sigset_t def;
  sigemptyset(&def);
  sigaddset(&def, SIGPIPE);  // the program gets the default SIGPIPE back
  posix_spawnattr_setsigdefault(&at, &def);
  posix_spawnattr_setpgroup(&at, 0);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF);
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, "/bin/sh", &fa, &at, const_cast<char* const*>(argv), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  RLHF_CHECK(rc == 0, "ppo.reward_command: cannot start /bin/sh: {}", std::strerror(rc));
  in.close_r();
  out.close_w();
  err.close_w();
  return pid;
}

// Feeds `input` and collects stdout / stderr until both close or the deadline passes, reaping
// the shell `pid` on the way (status: waitpid's, reaped set). Once the shell has exited, output
// is read for kGrace more at most: a background child it left holding the pipes open does not
// keep the trainer waiting (left_open says so). Returns false on timeout.
constexpr auto kGrace = std::chrono::milliseconds(200);
bool exchange(Pipe& in, Pipe& out, Pipe& err, const std::string& input, Clock::time_point deadline,
              pid_t pid, int& status, bool& reaped, bool& left_open, std::string& out_text, std::string& err_text) {
  Clock::time_point stop_reading = Clock::time_point::max();
  fcntl(in.w, F_SETFL, fcntl(in.w, F_GETFL) | O_NONBLOCK);
  size_t written = 0;
  if (input.empty()) in.close_w();
  char buf[65536];
  while (out.r >= 0 || err.r >= 0) {
    if (!reaped && waitpid(pid, &status, WNOHANG) == pid) {
      reaped = true;
      stop_reading = Clock::now() + kGrace;
    }
    if (Clock::now() >= stop_reading) {
      left_open = true;
      return true;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::min(deadline, stop_reading) - Clock::now()).count();
    if (left <= 0) return Clock::now() < deadline;
    pollfd fds[3];
    int n = 0, i_in = -1, i_out = -1, i_err = -1;
    if (in.w >= 0) { i_in = n; fds[n++] = {in.w, POLLOUT, 0}; }
    if (out.r >= 0) { i_out = n; fds[n++] = {out.r, POLLIN, 0}; }
    if (err.r >= 0) { i_err = n; fds[n++] = {err.r, POLLIN, 0}; }
    if (poll(fds, n, static_cast<int>(std::min<int64_t>(left, reaped ? 1000 : 20))) < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (i_in >= 0 && fds[i_in].revents != 0) {
      const ssize_t k = ::write(in.w, input.data() + written, input.size() - written);
      if (k > 0) written += static_cast<size_t>(k);
      if ((k < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) in.close_w();  // EPIPE: it stopped reading
    }
    for (auto [idx, pipe, text] : {std::make_tuple(i_out, &out, &out_text), std::make_tuple(i_err, &err, &err_text)}) {
      if (idx < 0 || fds[idx].revents == 0) continue;
      const ssize_t k = ::read(pipe->r, buf, sizeof buf);
      if (k > 0) text->append(buf, static_cast<size_t>(k));
      else if (k == 0 || (errno != EAGAIN && errno != EINTR)) pipe->close_r();
    }
    if (err_text.size() > 2 * kStderrTail) err_text.erase(0, err_text.size() - kStderrTail);
  }
  return true;
}

// Waits for pid until the deadline; false on timeout. status: waitpid's.
bool wait_until(pid_t pid, Clock::time_point deadline, int& status) {
  while (true) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno != EINTR) return true;  // already reaped (should not happen)
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string tail_of(const std::string& s) {
  std::string t = s.size() > kStderrTail ? s.substr(s.size() - kStderrTail) : s;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  return t.empty() ? std::string() : "; its stderr ends: " + t;
}

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
    if (s.empty() || stop != s.c_str() + s.size() || errno == ERANGE || !std::isfinite(v))
      return fmt::format("stdout line {}: '{}' is not one finite number (expected one number per "
                         "line, one line per JSON line of stdin)", line, s.substr(0, 80));
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
  IgnoreSigpipe no_sigpipe;
  Pipe in, out, err;
  const auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  const pid_t pid = spawn_shell(command, in, out, err);
  std::string out_text, err_text;
  int status = 0;
  bool reaped = false, left_open = false;
  const bool done = exchange(in, out, err, input, deadline, pid, status, reaped, left_open, out_text, err_text) &&
                    (reaped || wait_until(pid, deadline, status));
  if (done && left_open) kill(-pid, SIGKILL);  // the shell's leftover background children
  CommandOutcome r;
  const std::string who = fmt::format("ppo.reward_command '{}'", command);
  if (!done) {
    kill(-pid, SIGKILL);  // its whole process group (pipelines, children)
    waitpid(pid, &status, 0);
    r.error = fmt::format("{} did not answer {} rows within ppo.reward_timeout_s = {} s (killed)"
                          "{}", who, rows, timeout_s, tail_of(err_text));
    return r;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    r.error = WIFEXITED(status) ? fmt::format("{} exited with status {}{}", who, WEXITSTATUS(status), tail_of(err_text))
                                : fmt::format("{} was killed by signal {}{}", who, WTERMSIG(status), tail_of(err_text));
    return r;
  }
  const std::string bad = parse_answers(out_text, rows, r.scores);
  if (!bad.empty()) {
    r.scores.clear();
    r.error = fmt::format("{}: {}{}", who, bad, tail_of(err_text));
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
