#include "ppo/ppo_trainer.h"

#include <cmath>
#include <random>

#include "common/train/run.h"
#include "common/train/train_common.h"
#include "ppo/ppo_loss.h"
#include "ppo/rollout.h"
#include "common/core/rng.h"
#include "common/model/lm_loss.h"

namespace rlhf {

namespace {

void freeze(torch::nn::Module& m) {
  for (auto& p : m.parameters()) p.set_requires_grad(false);
  m.eval();
}

}  // namespace

int run_ppo(int argc, char** argv) { return run_ppo(parse_run_args(Stage::PPO, argc, argv)); }

int run_ppo(const RunRequest& req) {
  RunContext ctx = start_run(Stage::PPO, req);
  const Config& cfg = ctx.cfg;
  const PpoSection& pc = cfg.ppo;
  Communicator& comm = *ctx.comm;
  const torch::Device dev = ctx.device;
  const int world = comm.world_size();

  RLHF_CHECK(!cfg.init.empty(), "init is not set: PPO starts from the SFT checkpoint (init: runs/x/sft)");
  RLHF_CHECK(!pc.reward_model.empty(), "ppo.reward_model is not set: give the RM checkpoint");
  RLHF_CHECK(!cfg.data.train.empty(), "data.train is not set: give a prompts dataset from rlhf_prep");
  ModelSetup ms = resolve_model(cfg, cfg.init);
  const SpecialIds ids = special_ids(ms.tok);
  PromptData prompts = PromptData::load(cfg.data.train, ms.tok.identity);
  PretrainData ptx, ptx_eval;
  if (pc.ptx_coef > 0) {
    RLHF_CHECK(!cfg.data.pretrain.empty(), "ppo.ptx_coef = {} but data.pretrain is not set", pc.ptx_coef);
  }
  if (!cfg.data.pretrain.empty()) ptx = PretrainData::load(cfg.data.pretrain, ms.tok.identity);
  if (!cfg.data.pretrain_eval.empty()) ptx_eval = PretrainData::load(cfg.data.pretrain_eval, ms.tok.identity);
  const int64_t max_len = seq_len_limit(cfg, ms.cfg);
  const int64_t max_prompt = max_len - pc.max_new_tokens;
  RLHF_CHECK(max_prompt >= 2, "ppo.max_new_tokens = {} leaves no room for a prompt in {} tokens",
             pc.max_new_tokens, max_len);

  // Models: actor and reference from SFT, reward model frozen (with its bias), critic from the RM.
  torch::manual_seed(cfg.run.seed);
  ModelFile sft_file = read_model_h5(ms.init_path);
  CausalLM actor(ms.cfg), reference(ms.cfg);
  load_parameters(*actor, sft_file);
  load_parameters(*reference, sft_file);
  const std::string rm_path = resolve_model_path(pc.reward_model);
  ModelFile rm_file = read_model_h5(rm_path);
  RLHF_CHECK(rm_file.kind == "scalar", "{}: ppo.reward_model must be a reward model (kind scalar), found '{}'",
             rm_path, rm_file.kind);
  RLHF_CHECK(rm_file.tok.identity == ms.tok.identity, "reward model tokenizer '{}' ({}) differs from the policy's '{}'",
             rm_file.tok.identity, rm_path, ms.tok.identity);
  ModelConfig rm_cfg = rm_file.cfg;
  ScalarModel reward(rm_cfg);
  load_parameters(*reward, rm_file);
  ModelFile critic_file = pc.critic_init.empty() ? rm_file : read_model_h5(resolve_model_path(pc.critic_init));
  ModelConfig critic_cfg = critic_file.cfg;
  critic_cfg.dropout = cfg.model.dropout;
  ScalarModel critic(critic_cfg);
  load_parameters(*critic, critic_file, {"score.weight", "score.bias"}, true);
  for (torch::nn::Module* m : std::vector<torch::nn::Module*>{actor.get(), reference.get(), reward.get(), critic.get()})
    m->to(dev);
  freeze(*reference);
  freeze(*reward);
  if (comm.is_root() && !rm_file.extra.value("bias_fitted", false))
    fmt::print(stderr, "# warning: {} has no fitted bias (rm_train without data.bias_data)\n", rm_path);

  auto actor_params = named_params(*actor);
  auto critic_params = named_params(*critic);
  int64_t n_params = 0;
  for (auto& p : actor_params) n_params += p.param.numel();
  for (auto& p : critic_params) n_params += p.param.numel();
  check_consistency(comm, ctx.config_text, n_params);
  broadcast_parameters(comm, tensors_of(actor_params));
  broadcast_parameters(comm, tensors_of(critic_params));
  AdamW actor_opt(actor_params, cfg.train.beta1, cfg.train.beta2, cfg.train.adam_eps, cfg.train.weight_decay);
  AdamW critic_opt(critic_params, cfg.train.beta1, cfg.train.beta2, cfg.train.adam_eps, cfg.train.weight_decay);
  const double critic_lr_ratio = pc.critic_learning_rate > 0 ? pc.critic_learning_rate / cfg.train.learning_rate : 1.0;

  // Batch geometry: global_batch_size prompts per iteration; minibatches of minibatch_size
  // sequences per optimizer step; micro-batches of micro_batch_size per forward.
  const int64_t rollout_per_rank = accumulation_steps(cfg.train.global_batch_size, 1, world) ;
  const int64_t minibatch = pc.minibatch_size > 0 ? pc.minibatch_size : cfg.train.global_batch_size;
  RLHF_CHECK(cfg.train.global_batch_size % minibatch == 0,
             "train.global_batch_size = {} is not divisible by ppo.minibatch_size = {}", cfg.train.global_batch_size, minibatch);
  const int64_t mb_per_rank = minibatch / world;
  const int64_t accum = accumulation_steps(minibatch, cfg.train.micro_batch_size, world, "ppo.minibatch_size");
  const int64_t ptx_per_rank = pc.ptx_coef > 0 ? accumulation_steps(pc.ptx_batch_size, 1, world, "ppo.ptx_batch_size") : 0;
  RLHF_CHECK(ptx_per_rank == 0 || ptx.size() > pc.ptx_seq_len + 1, "data.pretrain has {} tokens, fewer than ppo.ptx_seq_len", ptx.size());

  ShardedSampler sampler(prompts.size(), cfg.run.seed, comm.rank(), world);
  AdaptiveKlController kl_ctl(pc.kl_coef, pc.kl_target, pc.kl_horizon);
  torch::manual_seed(cfg.run.seed * 1000003ULL + comm.rank());

  int64_t step = 0, skipped_total = 0;
  std::vector<CkptModel> ck_models{{"model.h5", actor.get(), "causal_lm", {}},
                                   {"critic.h5", critic.get(), "scalar", {{"critic", true}}}};
  const std::vector<CkptOptim> ck_optims{{"actor", &actor_opt}, {"critic", &critic_opt}};
  double ptx_eval_start = NAN;
  if (!ctx.resume_dir.empty()) {
    auto st = load_training_checkpoint(ctx.resume_dir, comm, ck_models, ck_optims);
    step = st.at("step").get<int64_t>();
    skipped_total = st.value("skipped_steps", int64_t{0});
    sampler.set_cursor(cursor_from_json(st.at("cursor")));
    kl_ctl.value = st.at("kl_coef").get<double>();
    ptx_eval_start = st.value("ptx_eval_loss_start", NAN);
  }
  const bool have_ptx_eval = ptx_eval.size() > pc.ptx_seq_len;
  const int64_t ptx_eval_windows = have_ptx_eval ? std::min<int64_t>(64, ptx_eval.size() / pc.ptx_seq_len) : 0;
  if (have_ptx_eval && std::isnan(ptx_eval_start))
    ptx_eval_start = eval_stream_loss(actor, ptx_eval, pc.ptx_seq_len, ptx_eval_windows, comm, dev);

  MetricsLogger metrics(cfg.run.dir, comm.is_root(), cfg.train.max_steps, cfg.run.log_every, !ctx.resume_dir.empty());
  metrics.message(fmt::format("# ppo: actor+critic {} trainable params, {} prompts, {} per rank per iteration, "
                              "minibatch {} ({} micro x {} accum per rank), ptx_coef {}",
                              n_params, prompts.size(), rollout_per_rank, minibatch, cfg.train.micro_batch_size, accum, pc.ptx_coef));
  auto save = [&]() {
    return save_training_checkpoint(*ctx.ckpt, comm, step, ck_models, ck_optims, ms.cfg, ms.tok,
                                    {{"cursor", cursor_json(sampler.cursor())}, {"skipped_steps", skipped_total},
                                     {"kl_coef", kl_ctl.value}, {"ptx_eval_loss_start", have_ptx_eval ? ptx_eval_start : 0.0}},
                                    ctx.config_text);
  };

  const SamplingConfig sc = sampling_config(pc.max_new_tokens, pc.temperature, pc.top_k, pc.top_p, ids);
  const KlEstimator est = pc.kl_estimator == KlEstimatorKind::K3 ? KlEstimator::K3 : KlEstimator::K1;

  int exit_code = 0;
  nlohmann::json last;
  const int64_t end_step = cfg.train.stop_at_step > 0 ? std::min(cfg.train.stop_at_step, cfg.train.max_steps)
                                                      : cfg.train.max_steps;
  while (step < end_step) {
    auto t_start = std::chrono::steady_clock::now();
    // ---- 1. rollouts (no autograd, eval mode) ------------------------------------------
    std::vector<int64_t> idx = sampler.next(cfg.train.global_batch_size);
    auto [ptoks, pmask] = prompt_batch(prompts, idx, ids, max_prompt);
    Rollout ro = generate_rollout(actor, ptoks.to(dev), pmask.to(dev), sc, mix_seed(cfg.run.seed, step, comm.rank(), 1));
    const double t_gen = seconds_since(t_start);
    auto t_score = std::chrono::steady_clock::now();
    {
      torch::NoGradGuard ng;
      actor->eval();
      critic->eval();
      ro.raw_score = score_rollout(reward, ro);                                        // [B]
      ro.score = ro.raw_score - pc.no_eos_penalty * ro.has_eos.logical_not().to(torch::kFloat);
      if (pc.score_clip > 0) ro.score = ro.score.clamp(-pc.score_clip, pc.score_clip);
      ro.old_logp = response_logprobs(actor, ro);                                      // [B, N]
      ro.ref_logp = response_logprobs(reference, ro);                                  // [B, N]
      ro.old_values = response_values(critic, ro);                                     // [B, N]
      auto m = ro.resp_mask;
      ro.old_logp = ro.old_logp.masked_fill(m.logical_not(), 0);
      ro.ref_logp = ro.ref_logp.masked_fill(m.logical_not(), 0);
      ro.old_values = ro.old_values.masked_fill(m.logical_not(), 0);
      ro.kl = kl_penalty(ro.old_logp, ro.ref_logp, est).masked_fill(m.logical_not(), 0);  // [B, N]
      ro.rewards = compute_rewards(ro.kl, ro.score, m, kl_ctl.value);                  // [B, N]
      GaeResult g = gae(ro.old_values, ro.rewards, m, pc.gamma, pc.gae_lambda);
      ro.returns = g.returns;
      // Whiten advantages with statistics over the GLOBAL batch (all ranks).
      MaskedStats st = masked_stats(g.advantages, m);
      const double sum = comm.all_reduce_scalar(st.sum), sum_sq = comm.all_reduce_scalar(st.sum_sq),
                   cnt = comm.all_reduce_scalar(st.count);
      MaskedStats glob{sum, sum_sq, cnt};
      ro.advantages = masked_whiten_with(g.advantages, m, glob.mean(), glob.var());
    }
    const double t_scoring = seconds_since(t_score);

    // ---- 2. PPO epochs over minibatches ---------------------------------------------------
    auto t_train = std::chrono::steady_clock::now();
    actor->train();
    critic->train();
    double pg_sum = 0, vf_sum = 0, clip_sum = 0, vclip_sum = 0, akl_sum = 0, ent_sum = 0, ptx_sum = 0;
    int64_t n_micro = 0, n_opt = 0, skipped = 0;
    double grad_norm = 0, critic_grad_norm = 0;
    const double lr = lr_at(step, cfg.train.max_steps, cfg.train.warmup_steps, cfg.train.learning_rate,
                            cfg.train.min_lr_ratio);
    std::mt19937_64 ptx_rng(mix_seed(cfg.run.seed, step, comm.rank(), 2));
    for (int64_t epoch = 0; epoch < pc.ppo_epochs; ++epoch) {
      for (int64_t mb0 = 0; mb0 < rollout_per_rank; mb0 += mb_per_rank) {
        bool finite = true;
        for (int64_t a = 0; a < accum; ++a) {
          const int64_t b0 = mb0 + a * cfg.train.micro_batch_size;
          Rollout mb = ro.slice(b0, b0 + cfg.train.micro_batch_size);
          torch::Tensor entropy;
          auto logp = response_logprobs(actor, mb, &entropy);                            // [b, N]
          PolicyLoss pl = policy_loss(logp, mb.old_logp, mb.advantages, mb.resp_mask, pc.clip_eps);
          auto values = response_values(critic, mb);                                   // [b, N]
          ValueLoss vl = value_loss(values, mb.old_values, mb.returns, mb.resp_mask, pc.value_clip);
          torch::Tensor loss = pl.loss + pc.vf_coef * vl.loss;
          if (ptx_per_rank > 0) {
            // InstructGPT's PPO-ptx: γ · CE on pretraining text in the same step.
            const int64_t rows = std::max<int64_t>(1, ptx_per_rank / accum);
            std::vector<int64_t> starts;
            std::uniform_int_distribution<int64_t> u(0, ptx.size() - pc.ptx_seq_len - 1);
            for (int64_t i = 0; i < rows; ++i) starts.push_back(u(ptx_rng));
            SeqBatch pb = build_stream_batch(ptx.tokens, starts, pc.ptx_seq_len);
            LmLoss pl2 = batch_lm_loss(actor, pb, dev);
            loss = loss + pc.ptx_coef * pl2.loss;
            ptx_sum += pl2.loss.item<double>();
          }
          (loss / static_cast<double>(accum)).backward();
          finite = finite && std::isfinite(loss.item<double>());
          pg_sum += pl.loss.item<double>();
          vf_sum += vl.loss.item<double>();
          clip_sum += pl.clip_frac.item<double>();
          vclip_sum += vl.clip_frac.item<double>();
          akl_sum += pl.approx_kl.item<double>();
          ent_sum += masked_mean(entropy.detach(), mb.resp_mask).item<double>();
          ++n_micro;
        }
        StepResult ra = optimizer_step(actor_opt, comm, lr, cfg.train.grad_clip, cfg.dist.bucket_mb, finite);
        StepResult rc = optimizer_step(critic_opt, comm, lr * critic_lr_ratio, cfg.train.grad_clip, cfg.dist.bucket_mb, finite);
        skipped += ra.skipped || rc.skipped;
        grad_norm = ra.grad_norm;
        critic_grad_norm = rc.grad_norm;
        ++n_opt;
      }
    }
    const double t_training = seconds_since(t_train);

    // ---- 3. metrics and the KL controller ---------------------------------------------------
    auto gsum = [&](double v) { return comm.all_reduce_scalar(v); };
    auto gmean = [&](double v) { return comm.all_reduce_scalar(v, ReduceOp::Avg); };
    const double B = static_cast<double>(cfg.train.global_batch_size);
    const auto fmask = ro.resp_mask.to(torch::kFloat);
    const double kl_seq = gsum(ro.kl.sum().item<double>()) / B;  // KL to reference per sequence
    const double reward_mean = gsum(ro.score.sum().item<double>()) / B;
    const double reward_sq = gsum(ro.score.pow(2).sum().item<double>()) / B;
    const double gen_tokens = gsum(fmask.sum().item<double>());
    const double beta_used = kl_ctl.value;
    if (pc.adaptive_kl) kl_ctl.update(kl_seq, cfg.train.global_batch_size);
    ++step;
    skipped_total += skipped;
    const double n_m = std::max<int64_t>(1, n_micro);
    nlohmann::json row = {
        {"step", step}, {"loss", gmean((pg_sum + pc.vf_coef * vf_sum) / n_m)}, {"lr", lr},
        {"grad_norm", grad_norm}, {"critic_grad_norm", critic_grad_norm},
        {"reward_mean", reward_mean}, {"reward_std", std::sqrt(std::max(0.0, reward_sq - reward_mean * reward_mean))},
        {"rm_score_raw", gsum(ro.raw_score.sum().item<double>()) / B},
        {"kl_to_ref", kl_seq}, {"beta", beta_used},
        {"policy_loss", gmean(pg_sum / n_m)}, {"value_loss", gmean(vf_sum / n_m)},
        {"clip_frac", gmean(clip_sum / n_m)}, {"value_clip_frac", gmean(vclip_sum / n_m)},
        {"approx_kl", gmean(akl_sum / n_m)}, {"entropy", gmean(ent_sum / n_m)},
        {"ptx_loss", ptx_per_rank > 0 ? gmean(ptx_sum / n_m) : 0.0},
        {"response_length", gen_tokens / B},
        {"eos_rate", gsum(ro.has_eos.to(torch::kFloat).sum().item<double>()) / B},
        {"gen_tokens_per_s", gen_tokens / std::max(1e-9, comm.all_reduce_scalar(t_gen, ReduceOp::Max))},
        {"tokens_per_s", gsum(ro.mask.to(torch::kFloat).sum().item<double>()) / seconds_since(t_start)},
        {"time_generate_s", t_gen}, {"time_score_s", t_scoring}, {"time_train_s", t_training},
        {"optimizer_steps", n_opt}, {"skipped", skipped}, {"skipped_total", skipped_total}};
    if (have_ptx_eval && cfg.train.eval_every > 0 && step % cfg.train.eval_every == 0)
      row["ptx_eval_loss"] = eval_stream_loss(actor, ptx_eval, pc.ptx_seq_len, ptx_eval_windows, comm, dev);
    metrics.log(row);
    last = row;
    if (cfg.ckpt.every > 0 && step % cfg.ckpt.every == 0 && step < end_step) save();
    if (stop_requested(comm)) {
      metrics.message(fmt::format("# stop signal: checkpointing at step {} and exiting with code {}", step, kExitPreempted));
      exit_code = kExitPreempted;
      break;
    }
  }
  const std::string ckpt = save();
  nlohmann::json summary = {{"stage", "ppo"}, {"steps", step}, {"checkpoint", ckpt},
                            {"complete", step >= cfg.train.max_steps}, {"skipped_steps", skipped_total},
                            {"kl_coef", kl_ctl.value}, {"last", last}};
  if (have_ptx_eval) {
    const double end_loss = eval_stream_loss(actor, ptx_eval, pc.ptx_seq_len, ptx_eval_windows, comm, dev);
    summary["ptx_eval_loss_start"] = ptx_eval_start;
    summary["ptx_eval_loss_end"] = end_loss;
    summary["ptx_eval_loss_rise"] = end_loss - ptx_eval_start;
  }
  metrics.summary(summary);
  metrics.message(fmt::format("# ppo done: step {}, checkpoint {}", step, ckpt));
  return exit_code;
}

}  // namespace rlhf
