// bench_generate — throughput of batched sampling with the static-KV-cache generator
// (rlhf::generate): B prompts of P random tokens (no padding), N new tokens each, sampling with
// temperature / top-k / top-p, no EOS stop (every row generates exactly N tokens).
//
// Prints one JSON object on stdout:
//   tokens_per_s        B·N / time of one generate() call (prefill + N sampled tokens)
//   prefill_ms          time of generate() with max_new_tokens = 1 (prefill + 1 sample)
//   ms_per_decode_step  (time(N) - time(1)) / (N - 1): one batched decode step incl. sampling
//   decode_tokens_per_s B / ms_per_decode_step
// --dtype bf16 casts the weights (and so the KV cache) to bfloat16, on CPU and CUDA alike
// (inference only; logits are float32 either way). Run with no flags for a small CPU case.
#include <iostream>

#include "bench_common.h"
#include "common/dist/dist.h"
#include "common/model/generate.h"
#include "common/core/process.h"

namespace rlhf::bench {

static int run(int argc, char** argv) {
  CLI::App app{"bench_generate: batched sampling throughput (one JSON object on stdout)"};
  CommonArgs a;
  int64_t batch = 8, prompt_len = 32, new_tokens = 64, top_k = 50;
  double temperature = 1.0, top_p = 1.0;
  add_common_flags(app, a);
  app.add_option("--batch", batch, "sequences per generate() call")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--prompt-len", prompt_len, "prompt tokens per row")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--new-tokens", new_tokens, "tokens sampled per row")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20))->capture_default_str();
  app.add_option("--temperature", temperature, "sampling temperature (0 = greedy)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--top-k", top_k, "top-k filter (0 = off)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--top-p", top_p, "nucleus filter (1 = off)")
      ->check(CLI::Range(1e-6, 1.0))->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  const int threads = set_threads(a.threads);
  const torch::Device dev = resolve_device(a.device);
  const Dtype dtype = parse_dtype(a.dtype);
  ModelConfig mc = model_config(a);
  RLHF_CHECK(prompt_len + new_tokens <= mc.max_seq_len,
             "--prompt-len {} + --new-tokens {} exceeds the model's max_seq_len {}", prompt_len,
             new_tokens, mc.max_seq_len);

  torch::manual_seed(a.seed);
  CausalLM model(mc);
  const int64_t n_params = count_params(*model);
  model->to(dev);
  if (dtype == Dtype::BF16) model->to(torch::kBFloat16);
  model->eval();

  auto prompts = random_tokens(batch, prompt_len, mc.vocab_size, a.seed + 1, dev);  // [B, P]
  auto mask = torch::ones({batch, prompt_len}, torch::dtype(torch::kBool).device(dev));  // [B, P]
  SamplingConfig sc;
  sc.temperature = temperature;
  sc.top_k = top_k;
  sc.top_p = top_p;
  sc.eos_id = -1;  // no early stop: exactly N tokens per row
  sc.stop_at_eos = false;
  apply_decode_flags(a, sc);
  SamplingConfig sc1 = sc;
  sc1.max_new_tokens = 1;
  sc.max_new_tokens = new_tokens;

  torch::NoGradGuard ng;
  uint64_t call_seed = a.seed;
  for (int64_t i = 0; i < a.warmup; ++i) {
    generate(model, prompts, mask, sc1, ++call_seed);
    generate(model, prompts, mask, sc, ++call_seed);
  }
  reset_peak_memory(dev);
  double t_full = 0, t_one = 0;
  int64_t graphs = 0;
  for (int64_t i = 0; i < a.iters; ++i) {
    Timer t1(dev);
    auto g1 = generate(model, prompts, mask, sc1, ++call_seed);
    t_one += t1.seconds();
    Timer tn(dev);
    auto gn = generate(model, prompts, mask, sc, ++call_seed);
    t_full += tn.seconds();
    graphs = gn.cuda_graphs;
    RLHF_CHECK(gn.new_tokens == new_tokens && gn.response_mask.all().item<bool>(),
               "bench_generate: expected {} new tokens on every row, got {}", new_tokens,
               gn.new_tokens);
  }
  t_full /= static_cast<double>(a.iters);
  t_one /= static_cast<double>(a.iters);
  const double step_ms = std::max(0.0, t_full - t_one) / static_cast<double>(new_tokens - 1) * 1e3;

  nlohmann::json out;
  out["bench"] = "generate";
  out["params"] = common_json(a, dev, threads);
  out["params"]["batch"] = batch;
  out["params"]["prompt_len"] = prompt_len;
  out["params"]["new_tokens"] = new_tokens;
  out["params"]["temperature"] = temperature;
  out["params"]["top_k"] = top_k;
  out["params"]["top_p"] = top_p;
  out["model"] = model_json(mc, a, n_params);
  out["cuda_graphs_captured"] = graphs;  // per generate() call; 0 = the decode ran uncaptured
  out["tokens_per_s"] = static_cast<double>(batch * new_tokens) / t_full;
  out["generate_s"] = t_full;
  out["prefill_ms"] = t_one * 1e3;
  out["ms_per_decode_step"] = step_ms;
  out["decode_tokens_per_s"] = step_ms > 0 ? static_cast<double>(batch) * 1e3 / step_ms : 0.0;
  out["peak_memory_bytes"] = peak_memory_bytes(dev);
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace rlhf::bench

int main(int argc, char** argv) {
  rlhf::choose_omp_wait_policy(argv);  // first: the OpenMP runtime reads it at load (process.h)
  return rlhf::run_main([&] { return rlhf::bench::run(argc, argv); });
}
