#include "tools/eval/generate.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>

#include "common/core/fs.h"
#include "common/core/rng.h"
#include "common/data/data.h"
#include "common/dist/dist.h"
#include "common/model/generate.h"
#include "common/train/train_common.h"
#include "ppo/policy_eval.h"
#include "tools/eval/sample.h"

namespace rlhf {

namespace {

struct GenerateOptions {
  std::string checkpoint, prompts, out, tokenizer, device, chat_template, system;
  int64_t n = 1, micro_batch = 32, max_prompts = 0, max_new_tokens = 0, top_k = 0;
  double temperature = 1.0, top_p = 1.0;
  uint64_t seed = 0;
  bool chat = false;
  std::string engine = "paged";
  int64_t max_batch_rows = EngineOptions{}.max_batch_rows;
};

struct PromptRow {
  std::string text;
  std::vector<int32_t> ids;
};

// The prompts of a .h5 dataset (decoded for display) or of a JSONL file (encoded here).
std::vector<PromptRow> read_prompts(const GenerateOptions& o, const LoadedPolicy& p) {
  std::vector<PromptRow> rows;
  const bool h5 = o.prompts.size() > 3 && o.prompts.substr(o.prompts.size() - 3) == ".h5";
  if (h5) {
    RLHF_CHECK(!o.chat, "--chat: {} holds token rows (chat rows were rendered by rlhf_prep); use "
               "--chat with a JSONL file of text prompts", o.prompts);
    const PromptData d = PromptData::load(o.prompts, p.file.tok.identity);
    for (int64_t i = 0; i < d.size(); ++i) {
      PromptRow r{p.tok->decode(d.prompt.row(i)), d.prompt.row(i)};
      if (!d.meta.chat() && p.sids.bos >= 0) r.ids.insert(r.ids.begin(), static_cast<int32_t>(p.sids.bos));
      rows.push_back(std::move(r));
    }
  } else {
    std::ifstream in(o.prompts);
    RLHF_CHECK(in.good(), "--prompts {}: cannot open (a .jsonl file or a prompts .h5 dataset)", o.prompts);
    std::string line;
    for (int64_t n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        throw Error(fmt::format("{}:{}: not JSON ({})", o.prompts, n, e.what()));
      }
      RLHF_CHECK(j.is_string() || (j.is_object() && j.contains("prompt") && j["prompt"].is_string()),
                 "{}:{}: expected a JSON string or an object with a string \"prompt\"", o.prompts, n);
      const std::string text = j.is_string() ? j.get<std::string>() : j["prompt"].get<std::string>();
      rows.push_back({text, p.encode(text, o.system)});
    }
  }
  if (o.max_prompts > 0 && static_cast<int64_t>(rows.size()) > o.max_prompts) rows.resize(o.max_prompts);
  RLHF_CHECK(!rows.empty(), "--prompts {}: no prompts", o.prompts);
  return rows;
}

// Items [begin, end) (item i = sample i % n of prompt i / n) -> one JSON line each.
std::vector<std::string> generate_items(LoadedPolicy& p, const std::vector<PromptRow>& prompts,
                                        int64_t begin, int64_t end, const GenerateOptions& o,
                                        const SamplingConfig& sc, int64_t* new_tokens) {
  const int64_t max_prompt = p.file.cfg.max_seq_len - sc.max_new_tokens;
  std::vector<std::vector<int32_t>> rows;
  std::vector<uint64_t> seeds;
  std::vector<bool> truncated;
  for (int64_t i = begin; i < end; ++i) {
    std::vector<int32_t> ids = prompts[i / o.n].ids;
    truncated.push_back(static_cast<int64_t>(ids.size()) > max_prompt);
    if (truncated.back()) ids.erase(ids.begin(), ids.end() - max_prompt);
    rows.push_back(std::move(ids));
    seeds.push_back(mix_seed(o.seed, i, 0, 4));
  }
  auto [toks, mask] = left_pad(rows, p.sids.pad);
  torch::NoGradGuard no_grad;
  GenerateOutput g = generate(p.model, toks.to(p.dev), mask.to(p.dev), sc, seeds);
  const torch::Tensor gen = g.tokens.slice(1, g.prompt_len).to(torch::kCPU);
  const torch::Tensor resp = g.response_mask.to(torch::kCPU);
  const torch::Tensor stop = stop_mask(gen, sc);
  std::vector<std::string> out;
  for (int64_t b = 0; b < end - begin; ++b) {
    std::vector<int32_t> ids;
    bool stopped = false;
    for (int64_t t = 0; t < gen.size(1) && resp[b][t].item<bool>(); ++t) {
      if (stop[b][t].item<bool>()) {
        stopped = true;
        break;
      }
      ids.push_back(static_cast<int32_t>(gen[b][t].item<int64_t>()));
    }
    *new_tokens += static_cast<int64_t>(ids.size()) + (stopped ? 1 : 0);
    const int64_t i = begin + b;
    out.push_back(nlohmann::json{{"index", i}, {"prompt_index", i / o.n}, {"sample", i % o.n},
                                 {"prompt", prompts[i / o.n].text}, {"response", p.tok->decode(ids)},
                                 {"tokens", ids}, {"finish_reason", stopped ? "stop" : "length"},
                                 {"prompt_truncated", static_cast<bool>(truncated[b])}}
                      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));  // not UTF-8: U+FFFD
  }
  return out;
}

int run_generate(const GenerateOptions& o) {
  Communicator& comm = world();
  // Refused before anything loads: writing would replace the prompts (as rlhf_prep refuses an
  // --out that is one of its inputs; the same file by identity, not by spelling).
  RLHF_CHECK(!same_file(o.prompts, o.out), "generate: --out {} is the prompts file (--prompts {}): "
             "writing it would replace the prompts; choose another output path", o.out, o.prompts);
  LoadedPolicy p(o.checkpoint, o.tokenizer, o.device.empty() ? "auto" : o.device, o.chat, o.chat_template);
  const std::vector<PromptRow> prompts = read_prompts(o, p);
  const int64_t ppo_length = o.max_new_tokens > 0 ? 0 : ppo_response_length(o.checkpoint);
  const int64_t length = o.max_new_tokens > 0 ? o.max_new_tokens : ppo_length > 0 ? ppo_length : kSampleDefaultLength;
  RLHF_CHECK(length < p.file.cfg.max_seq_len, "--max-new-tokens {} leaves no room for a prompt in the "
             "model's context of {} tokens", length, p.file.cfg.max_seq_len);
  SamplingConfig sc = sampling_config(length, o.temperature, o.top_k, o.top_p, p.sids);
  sc.engine = o.engine == "static" ? Engine::Static : Engine::Paged;
  sc.engine_opt.max_batch_rows = o.max_batch_rows;
  const int64_t items = static_cast<int64_t>(prompts.size()) * o.n;
  const auto t0 = std::chrono::steady_clock::now();
  int64_t new_tokens = 0;
  std::string mine;  // this rank's lines; rank 0 orders all by "index"
  for (auto [begin, end] : rank_chunks(items, o.micro_batch, comm))
    for (const std::string& line : generate_items(p, prompts, begin, end, o, sc, &new_tokens)) mine += line + "\n";
  const std::vector<std::string> parts = comm.all_gather_string(mine);
  const double secs = comm.all_reduce_scalar(seconds_since(t0), ReduceOp::Max);
  const double total_tokens = comm.all_reduce_scalar(static_cast<double>(new_tokens));
  if (!comm.is_root()) return 0;
  std::vector<std::pair<int64_t, std::string>> lines;
  for (const std::string& part : parts) {
    size_t a = 0;
    for (size_t b; (b = part.find('\n', a)) != std::string::npos; a = b + 1) {
      std::string line = part.substr(a, b - a);
      lines.emplace_back(nlohmann::json::parse(line).at("index").get<int64_t>(), std::move(line));
    }
  }
  std::sort(lines.begin(), lines.end());
  RLHF_CHECK(static_cast<int64_t>(lines.size()) == items, "generate: {} lines for {} items", lines.size(), items);
  std::string text;
  for (const auto& l : lines) text += l.second + "\n";
  write_file_atomic(o.out, text);
  std::cerr << fmt::format("generate: {} prompts x {} samples from {} on {} rank(s): {} new tokens in "
                           "{:.2f} s ({:.1f} tok/s) -> {}\n", prompts.size(), o.n, p.path, comm.world_size(),
                           total_tokens, secs, total_tokens / std::max(secs, 1e-9), o.out);
  std::cout << nlohmann::json{{"out", o.out}, {"prompts", prompts.size()}, {"samples", items},
                              {"new_tokens", total_tokens}, {"seconds", secs},
                              {"max_new_tokens", length}, {"ranks", comm.world_size()}}.dump() << std::endl;
  return 0;
}

}  // namespace

void register_eval_generate(CLI::App& app, int* exit_code) {
  static GenerateOptions o;  // lives as long as the app's callbacks
  auto* c = app.add_subcommand("generate", "batch generation to JSONL (data-parallel under mpirun)");
  c->add_option("--checkpoint", o.checkpoint, "checkpoint dir, run dir or model.h5")->required();
  c->add_option("--prompts", o.prompts, "prompts: .jsonl (strings or {\"prompt\": ...}) or a prompts .h5")
      ->required()->check(CLI::ExistingFile);
  c->add_option("--out", o.out, "output JSONL file")->required();
  c->add_option("--n", o.n, "samples per prompt")->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  add_sampling_flags(c, o.max_new_tokens, o.temperature, o.top_k, o.top_p, o.seed, kSampleDefaultLength);
  c->add_option("--micro-batch", o.micro_batch, "sequences per generate call (a prompt's --n samples "
                "in one call share its prefill)")->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  c->add_option("--engine", o.engine, "paged: the rollout engine (paged KV, continuous batching, one "
                "prefill per prompt); static: one padded batch until its longest row ends")
      ->capture_default_str()->check(CLI::IsMember({"paged", "static"}));
  c->add_option("--max-batch-rows", o.max_batch_rows, "paged engine: rows decoded together")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  c->add_option("--max-prompts", o.max_prompts, "only the first N prompts (0 = all)")->check(CLI::NonNegativeNumber);
  c->add_option("--tokenizer", o.tokenizer, "override the checkpoint's tokenizer spec (same identity)");
  c->add_option("--device", o.device, "cpu | cuda | cuda:N (default: cuda when available)");
  c->add_flag("--chat", o.chat, "JSONL prompts are user messages, rendered by the chat template");
  c->add_option("--system", o.system, "with --chat: a system message first");
  c->add_option("--chat-template", o.chat_template, "with --chat: auto | chatml | hh | llama3 | mistral | FILE.jinja");
  c->callback([=] { *exit_code = run_generate(o); });
}

}  // namespace rlhf
