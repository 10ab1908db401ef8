// bench_rollout — the rollout engine (paged KV, continuous batching, shared prompt prefill) vs the
// static batch on the same model, prompts, row seeds and response lengths.
//
// Response lengths come from real data: the assistant replies of Open Assistant trees
// (--lengths, default ../shared/data/oasst/en_100_tree.jsonl, run from the repository root),
// counted in GPT-2 BPE tokens (--tokenizer, default ../shared/data/gpt2), scaled so that the
// distribution's 95th percentile maps to --max-new-tokens, and drawn per row with --seed. A row
// ends at its drawn length (SamplingConfig.row_max_new_tokens: the EOS the model would emit
// there), so both samplers produce exactly the same useful tokens. Prompts are random tokens of
// ragged lengths (uniform in [0.75, 1] x --prompt-len; 0 = 4 x the mean response, the GRPO shape
// with prompts ~4x the responses), each repeated --samples times (a GRPO group).
//
// Prints one JSON object: per sampler {seconds, useful_tokens_per_s, prefill_tokens,
// decode_rows, decode_steps, peak_kv_bytes}, and speedup_vs_static (useful tokens/s, engine /
// static), kv_bytes_ratio (peak KV bytes, engine / static), prefill_ratio, same_tokens (the two
// samplers drew identical tokens). --spec FILE also writes the prompts and lengths as JSON, for
// bench/gpu/hf_rollout.py (Hugging Face generate on the same shapes).
// With no arguments: a GRPO-shaped CPU case (8 prompts x 8 samples, 4 layers x 256).
#include <algorithm>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>

#include "bench_common.h"
#include "bench_lengths.h"
#include "common/dist/dist.h"
#include "common/model/generate.h"
#include "common/tokenizer/tokenizer.h"
#include "common/core/process.h"

namespace rlhf::bench {

namespace {
nlohmann::json result_json(const GenerateOutput& g, double secs, int64_t useful) {
  return {{"seconds", secs}, {"useful_tokens_per_s", static_cast<double>(useful) / secs},
          {"new_tokens", g.new_tokens}, {"prefill_tokens", g.prefill_tokens},
          {"decode_rows", g.decode_rows}, {"decode_steps", g.decode_steps},
          {"peak_kv_bytes", g.peak_kv_bytes}};
}
}  // namespace

static int run(int argc, char** argv) {
  CLI::App app{"bench_rollout: rollout engine vs static batch (one JSON object on stdout)"};
  CommonArgs a;
  a.n_layer = 4;
  a.d_model = 256;
  a.d_ff = 1024;
  a.max_seq_len = 512;
  std::string lengths = "../shared/data/oasst/en_100_tree.jsonl", tokenizer = "../shared/data/gpt2",
              spec;
  int64_t prompts_n = 8, samples = 8, max_new = 64, prompt_len = 0, max_batch_rows = 256;
  double temperature = 1.0;
  add_common_flags(app, a);
  app.add_option("--lengths", lengths, "Open Assistant message trees (JSONL)")->capture_default_str();
  app.add_option("--tokenizer", tokenizer, "tokenizer that counts the reply lengths")->capture_default_str();
  app.add_option("--prompts", prompts_n, "distinct prompts")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--samples", samples, "samples per prompt (a GRPO group)")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--max-new-tokens", max_new, "longest response; the lengths' p95 maps here")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--prompt-len", prompt_len, "longest prompt (0 = 4 x the mean response)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--max-batch-rows", max_batch_rows, "engine: rows decoded together")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--temperature", temperature, "sampling temperature")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--spec", spec, "also write the prompts and lengths here (JSON)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  const int threads = set_threads(a.threads);
  const torch::Device dev = resolve_device(a.device);
  ModelConfig mc = model_config(a);

  // Response lengths: the real distribution, p95 -> max_new, drawn per row.
  auto tok = load_tokenizer(tokenizer);
  const std::vector<int64_t> real = reply_lengths(lengths, *tok);
  const double p95 = quantile(real, 0.95), scale = static_cast<double>(max_new) / p95;
  const int64_t B = prompts_n * samples;
  const std::vector<int64_t> limit = draw_lengths(real, max_new, B, a.seed);
  double mean_resp = 0;
  for (int64_t l : limit) mean_resp += static_cast<double>(l) / static_cast<double>(B);
  std::mt19937_64 rng(a.seed + 1);
  if (prompt_len == 0) prompt_len = std::max<int64_t>(4, std::lround(4 * mean_resp));
  RLHF_CHECK(prompt_len + max_new <= mc.max_seq_len, "--prompt-len {} + --max-new-tokens {} exceeds "
             "the model's max_seq_len {}", prompt_len, max_new, mc.max_seq_len);
  std::vector<std::vector<int32_t>> rows;
  std::vector<uint64_t> seeds;
  int64_t prompt_tokens = 0;
  for (int64_t p = 0; p < prompts_n; ++p) {
    const int64_t len = prompt_len - static_cast<int64_t>(rng() % static_cast<uint64_t>(prompt_len / 4 + 1));
    std::vector<int32_t> ids(len);
    for (auto& t : ids) t = static_cast<int32_t>(rng() % static_cast<uint64_t>(mc.vocab_size));
    for (int64_t s = 0; s < samples; ++s) {
      rows.push_back(ids);
      seeds.push_back(a.seed * 1000003 + static_cast<uint64_t>(rows.size()));
      prompt_tokens += len;
    }
  }
  int64_t useful = 0;
  for (int64_t l : limit) useful += l;
  auto [ptok, pmask] = left_pad(rows, 0);
  ptok = ptok.to(dev);
  pmask = pmask.to(dev);

  torch::manual_seed(a.seed);
  CausalLM model(mc);
  const int64_t n_params = count_params(*model);
  model->to(dev);
  if (parse_dtype(a.dtype) == Dtype::BF16) model->to(torch::kBFloat16);
  model->eval();
  SamplingConfig sc;
  sc.max_new_tokens = max_new;
  sc.temperature = temperature;
  sc.eos_id = -1;  // rows end at their drawn length
  sc.row_max_new_tokens = limit;
  sc.engine_opt.max_batch_rows = max_batch_rows;
  apply_decode_flags(a, sc);

  torch::NoGradGuard ng;
  auto timed = [&](Engine e, GenerateOutput* out) {
    sc.engine = e;
    for (int64_t i = 0; i < a.warmup; ++i) generate(model, ptok, pmask, sc, seeds);
    double best = 1e300;
    for (int64_t i = 0; i < a.iters; ++i) {
      Timer t(dev);
      *out = generate(model, ptok, pmask, sc, seeds);
      best = std::min(best, t.seconds());
    }
    RLHF_CHECK(out->response_mask.sum().item<int64_t>() == useful,
               "bench_rollout: {} response tokens, expected {}", out->response_mask.sum().item<int64_t>(), useful);
    return best;
  };
  GenerateOutput eng, stat;
  const double t_stat = timed(Engine::Static, &stat);
  const double t_eng = timed(Engine::Paged, &eng);
  const int64_t N = eng.new_tokens;
  const bool same = torch::equal(eng.tokens, stat.tokens.narrow(1, 0, stat.prompt_len + N));

  nlohmann::json out;
  out["bench"] = "rollout";
  out["params"] = common_json(a, dev, threads);
  out["params"].update({{"prompts", prompts_n}, {"samples_per_prompt", samples}, {"rows", B},
                        {"max_new_tokens", max_new}, {"prompt_len", prompt_len},
                        {"temperature", temperature}, {"max_batch_rows", max_batch_rows},
                        {"lengths", lengths}, {"block_size", sc.engine_opt.block_size}});
  out["model"] = model_json(mc, a, n_params);
  out["lengths"] = {{"source_replies", real.size()}, {"source_p50", quantile(real, 0.5)},
                    {"source_p95", p95}, {"scale", scale}, {"mean_response", mean_resp},
                    {"mean_prompt", static_cast<double>(prompt_tokens) / static_cast<double>(B)},
                    {"useful_tokens", useful}};
  out["static"] = result_json(stat, t_stat, useful);
  out["engine"] = result_json(eng, t_eng, useful);
  out["speedup_vs_static"] = t_stat / t_eng;
  out["kv_bytes_ratio"] = static_cast<double>(eng.peak_kv_bytes) / static_cast<double>(stat.peak_kv_bytes);
  out["prefill_ratio"] = static_cast<double>(eng.prefill_tokens) / static_cast<double>(stat.prefill_tokens);
  out["same_tokens"] = same;
  if (!spec.empty()) {
    nlohmann::json s = {{"prompts", rows}, {"row_max_new_tokens", limit}, {"max_new_tokens", max_new},
                        {"temperature", temperature}, {"model", mc.to_json()}, {"seed", a.seed}};
    std::ofstream(spec) << s.dump() << "\n";
  }
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace rlhf::bench

int main(int argc, char** argv) {
  rlhf::choose_omp_wait_policy(argv);  // first: the OpenMP runtime reads it at load (process.h)
  return rlhf::run_main([&] { return rlhf::bench::run(argc, argv); });
}
