#include "common/train/loop.h"

#include <algorithm>

namespace rlhf {

namespace {
std::vector<NamedParam> synced_params(RunContext& ctx, torch::nn::Module& model, int64_t* n) {
  auto params = named_params(model);
  *n = 0;
  for (auto& p : params) *n += p.param.numel();
  check_consistency(*ctx.comm, ctx.config_text, *n);
  broadcast_parameters(*ctx.comm, tensors_of(params));
  return params;
}
}  // namespace

SingleModelLoop::SingleModelLoop(RunContext& ctx, torch::nn::Module& model, const ModelSetup& ms,
                                 CkptModel ck_model, const std::string& optim_prefix,
                                 int64_t dataset_size)
    : ctx_(ctx),
      ms_(ms),
      opt_(synced_params(ctx, model, &n_params_), ctx.cfg.train.beta1, ctx.cfg.train.beta2,
           ctx.cfg.train.adam_eps, ctx.cfg.train.weight_decay),
      sampler_(dataset_size, ctx.cfg.run.seed, ctx.comm->rank(), ctx.comm->world_size()),
      accum_(accumulation_steps(ctx.cfg.train.global_batch_size, ctx.cfg.train.micro_batch_size,
                                ctx.comm->world_size())),
      ck_models_{std::move(ck_model)},
      ck_optims_{{optim_prefix, &opt_}},
      metrics_(ctx.cfg.run.dir, ctx.comm->is_root(), ctx.cfg.train.max_steps,
               ctx.cfg.run.log_every, !ctx.resume_dir.empty()) {
  // Each rank gets a distinct dropout stream (a resume restores it from the checkpoint).
  torch::manual_seed(ctx.cfg.run.seed * 1000003ULL + ctx.comm->rank());
  if (!ctx.resume_dir.empty()) {
    auto st = load_training_checkpoint(ctx.resume_dir, *ctx.comm, ck_models_, ck_optims_);
    step_ = st.at("step").get<int64_t>();
    skipped_total_ = st.value("skipped_steps", int64_t{0});
    sampler_.set_cursor(cursor_from_json(st.at("cursor")));
  }
}

std::string SingleModelLoop::save() {
  return save_training_checkpoint(*ctx_.ckpt, *ctx_.comm, step_, ck_models_, ck_optims_, ms_.cfg,
                                  ms_.tok,
                                  {{"cursor", cursor_json(sampler_.cursor())},
                                   {"skipped_steps", skipped_total_}},
                                  ctx_.config_text);
}

int SingleModelLoop::run(const std::function<StepStats()>& compute,
                         const std::function<nlohmann::json()>& evaluate) {
  const TrainSection& t = ctx_.cfg.train;
  Communicator& comm = *ctx_.comm;
  const int64_t end_step = t.stop_at_step > 0 ? std::min(t.stop_at_step, t.max_steps) : t.max_steps;
  while (step_ < end_step) {
    auto t0 = std::chrono::steady_clock::now();
    StepStats s = compute();
    const double lr = lr_at(step_, t.max_steps, t.warmup_steps, t.learning_rate, t.min_lr_ratio);
    StepResult r = optimizer_step(opt_, comm, lr, t.grad_clip, ctx_.cfg.dist.bucket_mb,
                                  std::isfinite(s.loss));
    ++step_;
    skipped_total_ += r.skipped;
    last_loss_ = s.loss;
    const double dt = seconds_since(t0);
    nlohmann::json row = {{"step", step_}, {"loss", s.loss}, {"lr", lr}, {"grad_norm", r.grad_norm},
                          {"tokens_per_s", comm.all_reduce_scalar(s.tokens) / dt},
                          {"skipped", r.skipped}, {"skipped_total", skipped_total_}};
    row.update(s.fields);
    if (t.eval_every > 0 && step_ % t.eval_every == 0) row.update(evaluate());
    metrics_.log(row);
    if (ctx_.cfg.ckpt.every > 0 && step_ % ctx_.cfg.ckpt.every == 0 && step_ < end_step) save();
    if (stop_requested(comm)) {
      metrics_.message(fmt::format("# stop signal: checkpointing at step {} and exiting with code {}",
                                   step_, kExitPreempted));
      return kExitPreempted;
    }
  }
  return 0;
}

nlohmann::json SingleModelLoop::finish(const std::string& stage, const nlohmann::json& extra,
                                       const std::function<nlohmann::json()>& evaluate) {
  const std::string ckpt = save();
  nlohmann::json summary = {{"stage", stage}, {"steps", step_}, {"final_loss", last_loss_},
                            {"skipped_steps", skipped_total_}, {"checkpoint", ckpt},
                            {"complete", complete()}};
  summary.update(extra);
  summary.update(evaluate());
  metrics_.summary(summary);
  return summary;
}

}  // namespace rlhf
