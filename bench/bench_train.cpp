// bench_train — training-step throughput of the causal LM: forward + masked LM loss + backward +
// rlhf::optimizer_step (global-norm clip + AdamW), on random tokens [B, T] (no padding), and the
// model FLOP utilisation relative to a matmul peak measured in the same process on the same
// device and dtype.
//
// Prints one JSON object on stdout:
//   tokens_per_s       B·T·iters / time of `iters` steps
//   achieved_flops     train_flops_per_token(N, cfg, T) · tokens_per_s  (formula: bench_common.h)
//   matmul_peak_flops  best-of-3 FLOP/s of [n, n] @ [n, n] matmuls (2n³ each)
//   mfu                achieved_flops / matmul_peak_flops
// --fused-head 1 (default): the loss is common/model/lm_loss.h's fused_lm_loss, as in the trainers;
// 0 materialises the [B, T, V] float32 logits (for the side-by-side ratio).
// --dtype bf16: CUDA autocast to bfloat16 around forward + loss, fp32 master weights and AdamW
// state (what the trainers' train.precision = bf16 does); the peak is then a bf16 matmul.
// On CPU, bf16 is refused (the trainers' bf16 mode is CUDA autocast only). Run with no flags for
// a small CPU case.
// --packing: SFT rows of real lengths instead (Open Assistant reply lengths, --lengths, scaled
// so their p95 is --seq-len; bench_lengths.h), each step timed padded (build_seq_batch: every row
// padded to the longest) and packed (pack_rows: train.packing) side by side on the same rows and
// weights: real_tokens_per_s of each (non-pad tokens / step time), speedup_vs_padded, and the
// two losses (equal up to round-off).
#include <cmath>
#include <iostream>

#include <ATen/autocast_mode.h>

#include "bench_common.h"
#include "bench_lengths.h"
#include "common/core/compat.h"
#include "common/dist/dist.h"
#include "common/train/optimizer.h"
#include "common/model/lm_loss.h"
#include "common/train/train_common.h"
#include "common/core/process.h"

namespace rlhf::bench {

// --packing: padded vs packed SFT steps on rows of real lengths (see the header comment).
static nlohmann::json packing_case(CausalLM& model, AdamW& opt, const CommonArgs& a, int64_t batch,
                                   int64_t seq_len, const std::string& lengths, const std::string& tokenizer,
                                   double lr, double grad_clip, const torch::Device& dev) {
  const std::vector<int64_t> len = real_lengths(lengths, tokenizer, seq_len - 2, batch, a.seed);
  std::vector<std::vector<int32_t>> prompt(batch), response(batch);
  std::vector<PromptResponse> rows;
  int64_t real = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t p = std::max<int64_t>(1, len[b] / 4), r = std::max<int64_t>(1, len[b] - p);
    for (int64_t i = 0; i < p; ++i) prompt[b].push_back(static_cast<int32_t>(3 + (b * 31 + i * 7) % (model->cfg.vocab_size - 3)));
    for (int64_t i = 0; i < r; ++i) response[b].push_back(static_cast<int32_t>(3 + (b * 17 + i * 11) % (model->cfg.vocab_size - 3)));
    rows.push_back({prompt[b].data(), p, response[b].data(), r});
    real += 2 + p + r;  // BOS + prompt + response + EOS
  }
  SpecialIds ids;
  ids.bos = 1;
  ids.eos = 2;
  const SeqBatch padded = build_seq_batch(rows, ids, seq_len), packed = pack_rows(padded);
  Communicator& comm = world();
  double loss = 0;
  auto step = [&](const SeqBatch& b) {
    LmLoss l = batch_lm_loss(model, b, dev);
    l.loss.backward();
    loss = l.loss.item<double>();
    optimizer_step(opt, comm, lr, grad_clip, 25.0, std::isfinite(loss));
  };
  auto timed = [&](const SeqBatch& b) {
    for (int64_t i = 0; i < a.warmup; ++i) step(b);
    double best = 1e300;
    for (int64_t i = 0; i < a.iters; ++i) {
      Timer t(dev);
      step(b);
      best = std::min(best, t.seconds());
    }
    return best;
  };
  // Same weights for both losses: measure them before any step moves the weights.
  const double loss_padded = batch_lm_loss(model, padded, dev).loss.item<double>();
  const double loss_packed = batch_lm_loss(model, packed, dev).loss.item<double>();
  const double t_pad = timed(padded), t_pack = timed(packed);
  return {{"rows", batch}, {"real_tokens", real}, {"padded_tokens", padded.tokens.numel()},
          {"mean_len", static_cast<double>(real) / static_cast<double>(batch)},
          {"padded", {{"step_ms", t_pad * 1e3}, {"real_tokens_per_s", static_cast<double>(real) / t_pad}}},
          {"packed", {{"step_ms", t_pack * 1e3}, {"real_tokens_per_s", static_cast<double>(real) / t_pack}}},
          {"speedup_vs_padded", t_pad / t_pack}, {"loss_padded", loss_padded}, {"loss_packed", loss_packed},
          {"lengths", lengths}};
}

static int run(int argc, char** argv) {
  CLI::App app{"bench_train: forward + backward + AdamW throughput and MFU (one JSON object)"};
  CommonArgs a;
  int64_t batch = 8, seq_len = 128, peak_n = 0, peak_iters = 0;
  double lr = 3e-4, grad_clip = 1.0;
  bool act_ckpt = false, packing = false;
  int fused_head = 1;
  std::string lengths = "../shared/data/oasst/en_100_tree.jsonl", tokenizer = "../shared/data/gpt2";
  add_common_flags(app, a);
  app.add_flag("--packing", packing, "padded vs packed SFT steps on real row lengths (speedup_vs_padded)");
  app.add_option("--lengths", lengths, "--packing: Open Assistant trees (JSONL)")->capture_default_str();
  app.add_option("--tokenizer", tokenizer, "--packing: the tokenizer that counts the lengths")->capture_default_str();
  app.add_option("--batch", batch, "sequences per step")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seq-len", seq_len, "tokens per sequence")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20))->capture_default_str();
  app.add_option("--lr", lr, "AdamW learning rate")->capture_default_str();
  app.add_option("--grad-clip", grad_clip, "global-norm clip (0 = off)")->capture_default_str();
  app.add_flag("--activation-checkpointing", act_ckpt, "recompute each block in backward");
  app.add_option("--fused-head", fused_head,
                 "1 = fused_lm_loss (chunked LM head, no [B, T, V] logits), 0 = logits + masked_lm_loss")
      ->check(CLI::Range(0, 1))->capture_default_str();
  app.add_option("--peak-n", peak_n, "matmul size for the peak (0 = 1024 on CPU, 8192 on CUDA)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--peak-iters", peak_iters, "matmuls per timed repeat (0 = 8 on CPU, 50 on CUDA)")
      ->check(CLI::NonNegativeNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  const int threads = set_threads(a.threads);  // after DistRuntime's default
  const torch::Device dev = resolve_device(a.device);
  const Dtype dtype = parse_dtype(a.dtype);
  RLHF_CHECK(dtype == Dtype::FP32 || dev.is_cuda(),
             "bench_train: --dtype bf16 means CUDA autocast (fp32 master weights), as in the "
             "trainers; on --device cpu use --dtype fp32");
  ModelConfig mc = model_config(a);
  mc.activation_checkpointing = act_ckpt;
  RLHF_CHECK(seq_len <= mc.max_seq_len, "--seq-len {} exceeds the model's max_seq_len {}", seq_len,
             mc.max_seq_len);

  torch::manual_seed(a.seed);
  CausalLM model(mc);
  const int64_t n_params = count_params(*model);
  const int64_t n_matmul = matmul_params(*model, mc);
  model->to(dev);
  model->train();
  AdamW opt(named_params(*model), 0.9, 0.95, 1e-8, 0.1);
  Communicator& comm = world();

  if (packing) {
    nlohmann::json out;
    out["bench"] = "train_packing";
    out["params"] = common_json(a, dev, threads);
    out["params"]["seq_len"] = seq_len;
    out["model"] = model_json(mc, a, n_params);
    out.update(packing_case(model, opt, a, batch, seq_len, lengths, tokenizer, lr, grad_clip, dev));
    std::cout << out.dump() << std::endl;
    return 0;
  }
  auto tokens = random_tokens(batch, seq_len, mc.vocab_size, a.seed + 1, dev);  // [B, T]
  auto positions = torch::arange(seq_len, torch::dtype(torch::kLong).device(dev))
                       .unsqueeze(0).expand({batch, seq_len});                   // [B, T]
  auto loss_mask = torch::ones({batch, seq_len}, torch::dtype(torch::kBool).device(dev));  // [B, T]
  const bool autocast = dtype == Dtype::BF16;

  double last_loss = 0;
  auto step = [&]() {
    if (autocast) compat::set_autocast_state({true, at::kBFloat16});
    LmLoss l = fused_head
        ? fused_lm_loss(model->trunk(tokens, positions, torch::Tensor()), model->head_weight(),
                        tokens, loss_mask)
        : masked_lm_loss(model->forward(tokens, positions, torch::Tensor()), tokens, loss_mask);
    if (autocast) compat::set_autocast_state({false, at::kBFloat16});
    l.loss.backward();
    if (autocast) at::autocast::clear_cache();
    last_loss = l.loss.item<double>();
    optimizer_step(opt, comm, lr, grad_clip, 25.0, std::isfinite(last_loss));
  };

  for (int64_t i = 0; i < a.warmup; ++i) step();
  reset_peak_memory(dev);
  Timer t(dev);
  for (int64_t i = 0; i < a.iters; ++i) step();
  const double secs = t.seconds();
  const nlohmann::json peak_mem = peak_memory_bytes(dev);

  if (peak_n <= 0) peak_n = dev.is_cuda() ? 8192 : 1024;
  if (peak_iters <= 0) peak_iters = dev.is_cuda() ? 50 : 8;
  const auto mm_dtype = dtype == Dtype::BF16 ? torch::kBFloat16 : torch::kFloat;
  const double peak = matmul_peak_flops(dev, mm_dtype, peak_n, static_cast<int>(peak_iters));

  const double tokens_per_s = static_cast<double>(batch * seq_len * a.iters) / secs;
  const double flops_per_token = train_flops_per_token(n_matmul, mc, seq_len);
  const double achieved = flops_per_token * tokens_per_s;

  nlohmann::json out;
  out["bench"] = "train";
  out["params"] = common_json(a, dev, threads);
  out["params"]["batch"] = batch;
  out["params"]["seq_len"] = seq_len;
  out["params"]["lr"] = lr;
  out["params"]["grad_clip"] = grad_clip;
  out["params"]["peak_n"] = peak_n;
  out["params"]["peak_iters"] = peak_iters;
  out["params"]["fused_head"] = fused_head == 1;
  out["params"]["precision"] = autocast ? "bf16 autocast, fp32 master weights" : "fp32";
  out["model"] = model_json(mc, a, n_params);
  out["model"]["n_matmul_params"] = n_matmul;
  out["tokens_per_s"] = tokens_per_s;
  out["step_ms"] = secs / static_cast<double>(a.iters) * 1e3;
  out["flops_per_token"] = flops_per_token;
  out["achieved_flops"] = achieved;
  out["matmul_peak_flops"] = peak;
  out["mfu"] = achieved / peak;
  out["final_loss"] = last_loss;
  out["peak_memory_bytes"] = peak_mem;
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace rlhf::bench

int main(int argc, char** argv) {
  rlhf::choose_omp_wait_policy(argv);  // first: the OpenMP runtime reads it at load (process.h)
  rlhf::DistRuntime rt(&argc, &argv);
  return rlhf::run_main([&] { return rlhf::bench::run(argc, argv); });
}
