// bench_ppo — wall time of one PPO iteration with random models, through ppo_train's own steps
// (ppo_step.h), without data loading, logging or the ptx term:
//   generate  (rlhf::generate_rollout: B prompts of P random tokens, N sampled tokens, no EOS)
//   score     (make_experience: reward model score, old-policy / reference log-probs, critic
//              values, k1 KL, per-token rewards, GAE, advantages whitened over all ranks)
//   train     (ppo_update, 1 epoch over minibatches: PPO-clip policy loss + vf_coef · clipped
//              value loss, backward, optimizer steps for actor and critic)
// The actor and the reference share initial weights (same seed), as do the reward model and the
// critic (the critic is initialised from the RM in ppo_train).
//
// Prints one JSON object on stdout: time_generate_s, time_score_s, time_train_s, total_s (means
// over --iters iterations) and tokens_per_s = B·N / total_s (response tokens per second of whole
// iterations). --dtype bf16: CUDA autocast to bfloat16 around every forward, fp32 master
// weights; refused on CPU. Run with no flags for a small CPU case.
// Memory options, as ppo_train's (issue 16): --lora-rank R puts LoRA adapters (alpha 2R, every
// projection) on actor and critic, trains only them (and the critic's head), and makes the
// reference the actor's base with its adapters off; --frozen-bf16 keeps the frozen weights in
// bf16 (ppo.frozen_dtype: bf16: reward model and a separate reference; with LoRA the actor's and
// critic's base, which needs --device cuda --dtype bf16); --offload-frozen keeps the reward model
// (and a separate reference) on the CPU outside the scoring phase (ppo.offload_frozen).
#include <cmath>
#include <iostream>

#include <ATen/autocast_mode.h>

#include "bench_common.h"
#include "bench_lengths.h"
#include "common/core/compat.h"
#include "common/dist/dist.h"
#include "common/train/optimizer.h"
#include "common/model/lora.h"
#include "ppo/frozen.h"
#include "ppo/ppo_config.h"
#include "ppo/ppo_loss.h"
#include "ppo/ppo_step.h"
#include "ppo/rollout.h"
#include "common/core/process.h"

namespace rlhf::bench {

struct PpoArgs {
  int64_t batch = 8, prompt_len = 16, new_tokens = 32, minibatch = 4;
  double kl_coef = 0.05, gamma = 1.0, lam = 0.95, clip_eps = 0.2, value_clip = 0.2, vf_coef = 0.1,
         lr = 1e-5, grad_clip = 1.0;
  int64_t lora_rank = 0;
  bool frozen_bf16 = false, offload_frozen = false;
  int64_t samples = 1;              // > 1: GRPO (critic-free, group-normalised), groups of this size
  std::string engine = "paged";     // paged | static (ppo.rollout_engine)
  std::string lengths;              // Open Assistant trees: real response lengths (bench_rollout's rule)
  std::string tokenizer = "../shared/data/gpt2";
};

static int run(int argc, char** argv) {
  CLI::App app{"bench_ppo: one PPO iteration's phase times (one JSON object on stdout)"};
  CommonArgs a;
  PpoArgs p;
  add_common_flags(app, a);
  app.add_option("--batch", p.batch, "rollout batch (prompts per iteration)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--prompt-len", p.prompt_len, "prompt tokens per row")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--new-tokens", p.new_tokens, "response tokens per row")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--minibatch", p.minibatch, "rows per PPO optimisation step")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--lr", p.lr, "AdamW learning rate (actor and critic)")->capture_default_str();
  app.add_option("--lora-rank", p.lora_rank, "LoRA rank on actor and critic (0 = full fine-tuning)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_flag("--frozen-bf16", p.frozen_bf16, "frozen weights in bf16 (ppo.frozen_dtype: bf16)");
  app.add_flag("--offload-frozen", p.offload_frozen, "reward model (+ reference) on the CPU between scoring phases");
  app.add_option("--samples", p.samples, "samples per prompt; > 1 runs GRPO (no critic), --batch "
                 "then counts prompts")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--engine", p.engine, "paged: the rollout engine and shared-prompt forwards; "
                 "static: one padded batch, full rows")->check(CLI::IsMember({"paged", "static"}))
      ->capture_default_str();
  app.add_option("--lengths", p.lengths, "Open Assistant trees (JSONL): response lengths drawn from "
                 "their replies, p95 -> --new-tokens (default: every row --new-tokens, no EOS)");
  app.add_option("--tokenizer", p.tokenizer, "with --lengths: the tokenizer that counts them")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  const int threads = set_threads(a.threads);
  const torch::Device dev = resolve_device(a.device);
  const Dtype dtype = parse_dtype(a.dtype);
  RLHF_CHECK(dtype == Dtype::FP32 || dev.is_cuda(),
             "bench_ppo: --dtype bf16 means CUDA autocast (fp32 master weights); on --device cpu "
             "use --dtype fp32");
  const ModelConfig mc = model_config(a);
  RLHF_CHECK(p.prompt_len + p.new_tokens <= mc.max_seq_len,
             "--prompt-len {} + --new-tokens {} exceeds the model's max_seq_len {}", p.prompt_len,
             p.new_tokens, mc.max_seq_len);
  RLHF_CHECK(p.batch % p.minibatch == 0, "--batch {} must be a multiple of --minibatch {}",
             p.batch, p.minibatch);
  const bool grpo = p.samples > 1;
  const int64_t rows = p.batch * p.samples;

  // Built on the CPU, adapted and cast as ppo_train does (ppo_setup.cpp), then moved.
  auto make_lm = [&](uint64_t s) {
    torch::manual_seed(s);
    return CausalLM(mc);
  };
  auto make_scalar = [&](uint64_t s) {
    torch::manual_seed(s);
    return ScalarModel(mc);
  };
  const bool lora = p.lora_rank > 0;
  CausalLM actor = make_lm(a.seed), ref = lora ? actor : make_lm(a.seed);
  ScalarModel rm = make_scalar(a.seed + 7), critic = make_scalar(a.seed + 7);
  if (lora) {
    LoraInfo info;
    info.opt.rank = p.lora_rank;
    info.opt.alpha = 2.0 * static_cast<double>(p.lora_rank);
    info.base = "(random weights)";
    attach_lora(*actor, info);
    attach_lora(*critic, info);
  }
  for (auto& q : rm->parameters()) q.set_requires_grad(false);
  if (!lora)
    for (auto& q : ref->parameters()) q.set_requires_grad(false);
  Config fc = parse_config(ppo_stage(), "", "<bench_ppo>");  // ppo.frozen_dtype's settings for apply_frozen_dtype
  ppo_section(fc).frozen_dtype = p.frozen_bf16 ? Precision::BF16 : Precision::FP32;
  fc.lora.rank = p.lora_rank;
  fc.train.device = dev.is_cuda() ? DeviceKind::CUDA : DeviceKind::CPU;
  fc.train.precision = dtype == Dtype::BF16 ? Precision::BF16 : Precision::FP32;
  const int64_t cast = apply_frozen_dtype(fc, dev, *rm, lora ? nullptr : ref.get(),
                                          lora ? std::vector<torch::nn::Module*>{actor.get(), critic.get()}
                                               : std::vector<torch::nn::Module*>{});
  std::vector<torch::nn::Module*> frozen{rm.get()};
  if (!lora) frozen.push_back(ref.get());
  actor->to(dev);
  critic->to(dev);
  for (auto* m : frozen) {
    m->eval();
    if (!p.offload_frozen) m->to(dev);
  }
  PpoModels models{actor, ref, rm, grpo ? ScalarModel(nullptr) : critic};
  AdamW actor_opt(named_params(*actor), 0.9, 0.95, 1e-8, 0.0);
  AdamW critic_opt(named_params(*critic), 0.9, 0.95, 1e-8, 0.0);  // unused with GRPO
  Communicator& comm = world();
  const int64_t n_params = count_params(*actor);
  int64_t trained = 0;
  for (const auto& q : named_params(*actor)) trained += q.param.numel();
  for (const auto& q : named_params(*critic)) trained += q.param.numel();

  // Each prompt `samples` times in a row (a GRPO group); row seeds as ppo_train's.
  auto distinct = random_tokens(p.batch, p.prompt_len, mc.vocab_size, a.seed + 1, dev);  // [b, P]
  auto prompts = distinct.repeat_interleave(p.samples, 0);                                 // [B, P]
  auto pmask = torch::ones({rows, p.prompt_len}, torch::dtype(torch::kBool).device(dev));
  SamplingConfig sc = sampling_config(p.new_tokens, 1.0, 0, 1.0, SpecialIds{-1, -1, 0});  // no EOS
  apply_decode_flags(a, sc);
  sc.engine = p.engine == "static" ? Engine::Static : Engine::Paged;
  double mean_len = static_cast<double>(p.new_tokens);
  if (!p.lengths.empty()) {
    sc.row_max_new_tokens = real_lengths(p.lengths, p.tokenizer, p.new_tokens, rows, a.seed);
    mean_len = 0;
    for (int64_t l : sc.row_max_new_tokens) mean_len += static_cast<double>(l) / static_cast<double>(rows);
  }
  std::vector<uint64_t> row_seeds(rows);
  // ppo_train's steps with its defaults where the flags say nothing: k1 KL, fixed β, 1 epoch,
  // micro-batch = minibatch, no ptx. bf16: autocast for the whole iteration, as ppo_train.
  ExperienceOptions exp;
  exp.kl_coef = p.kl_coef;
  exp.gamma = p.gamma;
  exp.gae_lambda = p.lam;
  if (grpo) {
    exp.advantage = AdvantageKind::Grpo;
    exp.group = p.samples;
  }
  UpdateOptions upd;
  upd.minibatch_rows = p.minibatch * p.samples;
  upd.micro_rows = p.minibatch * p.samples;
  upd.clip_eps = p.clip_eps;
  upd.value_clip = p.value_clip;
  upd.vf_coef = p.vf_coef;
  upd.lr = upd.critic_lr = p.lr;
  upd.grad_clip = p.grad_clip;
  std::unique_ptr<compat::AutocastScope> autocast;
  if (dtype == Dtype::BF16) autocast = std::make_unique<compat::AutocastScope>(true, at::kBFloat16);

  double t_gen = 0, t_score = 0, t_train = 0;
  double last_pl = 0, last_vl = 0;
  auto iteration = [&](uint64_t seed, bool timed) {
    Timer t(dev);
    for (int64_t b = 0; b < rows; ++b) row_seeds[b] = seed * 1000003 + static_cast<uint64_t>(b);
    Rollout r = generate_rollout(actor, prompts, pmask, sc, row_seeds);
    const double g = t.seconds();
    t.reset();
    {
      OnDeviceScope resident(frozen, dev, p.offload_frozen);
      make_experience(models, r, exp, comm);
    }
    const double s = t.seconds();
    t.reset();
    upd.shuffle_seed = seed;
    UpdateStats st = ppo_update(models, actor_opt, grpo ? nullptr : &critic_opt, r, upd, comm, dev);
    const double tr = t.seconds();
    last_pl = st.policy_loss / std::max<int64_t>(1, st.optimizer_steps);
    last_vl = st.value_loss / std::max<int64_t>(1, st.optimizer_steps);
    if (timed) {
      t_gen += g;
      t_score += s;
      t_train += tr;
    }
  };

  uint64_t seed = a.seed;
  for (int64_t i = 0; i < a.warmup; ++i) iteration(++seed, false);
  reset_peak_memory(dev);
  for (int64_t i = 0; i < a.iters; ++i) iteration(++seed, true);
  const double n = static_cast<double>(a.iters);
  t_gen /= n;
  t_score /= n;
  t_train /= n;
  const double total = t_gen + t_score + t_train;

  nlohmann::json out;
  out["bench"] = "ppo";
  out["params"] = common_json(a, dev, threads);
  out["params"]["batch"] = p.batch;
  out["params"]["prompt_len"] = p.prompt_len;
  out["params"]["new_tokens"] = p.new_tokens;
  out["params"]["minibatch"] = p.minibatch;
  out["params"]["top_k"] = 0;  // PPO samples the full distribution (ppo_trainer refuses top-k)
  out["params"]["ppo_epochs"] = 1;
  out["params"]["lora_rank"] = p.lora_rank;
  out["params"]["frozen_dtype"] = p.frozen_bf16 ? "bf16" : "fp32";
  out["params"]["offload_frozen"] = p.offload_frozen;
  out["params"]["samples_per_prompt"] = p.samples;
  out["params"]["advantage"] = grpo ? "grpo" : "gae";
  out["params"]["engine"] = p.engine;
  out["params"]["lengths"] = p.lengths;
  out["mean_response_len"] = mean_len;
  out["trained_params"] = trained;  // actor + critic
  out["frozen_params_bf16"] = cast;
  out["model"] = model_json(mc, a, n_params);
  out["tokens_per_s"] = static_cast<double>(rows) * mean_len / total;  // response tokens
  out["time_generate_s"] = t_gen;
  out["time_score_s"] = t_score;
  out["time_train_s"] = t_train;
  out["total_s"] = total;
  out["last_policy_loss"] = last_pl;
  out["last_value_loss"] = last_vl;
  out["peak_memory_bytes"] = peak_memory_bytes(dev);
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace rlhf::bench

int main(int argc, char** argv) {
  rlhf::choose_omp_wait_policy(argv);  // first: the OpenMP runtime reads it at load (process.h)
  rlhf::DistRuntime rt(&argc, &argv);
  return rlhf::run_main([&] { return rlhf::bench::run(argc, argv); });
}
