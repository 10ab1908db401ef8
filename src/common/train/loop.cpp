#include "common/train/loop.h"

#include <algorithm>

#include "common/core/memory.h"
#include "common/train/dry_run.h"

namespace rlhf {

namespace {
// Every rank agrees on the config and parameter count and holds rank 0's weights; then one AdamW
// per trained model.
std::vector<std::unique_ptr<AdamW>> make_optimizers(RunContext& ctx, const std::vector<TrainedModel>& trained,
                                                    int64_t* n) {
  std::vector<std::vector<NamedParam>> params;
  *n = 0;
  for (const auto& t : trained) {
    params.push_back(named_params(*t.module));
    for (auto& p : params.back()) *n += p.param.numel();
  }
  check_consistency(*ctx.comm, ctx.config_text, *n);
  for (auto& p : params) broadcast_parameters(*ctx.comm, tensors_of(p));
  const TrainSection& t = ctx.cfg.train;
  std::vector<std::unique_ptr<AdamW>> opts;
  const ZeroStage zero = zero_stage_from(ctx.cfg.dist.zero_stage);
  for (size_t i = 0; i < params.size(); ++i) {
    opts.push_back(std::make_unique<AdamW>(params[i], t.beta1, t.beta2, t.adam_eps, t.weight_decay));
    opts.back()->shard(zero, *ctx.comm, *trained[i].module);
  }
  return opts;
}
}  // namespace

TrainLoop::TrainLoop(RunContext& ctx, const ModelSetup& ms, std::vector<CkptModel> saved,
                     const std::vector<TrainedModel>& trained, int64_t dataset_size, ExtraState extra)
    : ctx_(ctx),
      ms_(ms),
      opts_(make_optimizers(ctx, trained, &n_params_)),
      sampler_(dataset_size, ctx.cfg.run.seed, ctx.comm->rank(), ctx.comm->world_size()),
      // (micro-batches count rows: StagePlan::rows_per_sample per sample; PPO: rollout rows)
      accum_(accumulation_steps(ctx.cfg.train.global_batch_size, ctx.cfg.train.micro_batch_size,
                                ctx.comm->world_size(), "train.global_batch_size",
                                stage_plan(ctx.cfg).rows_per_sample)),
      saved_(std::move(saved)),
      extra_(std::move(extra)),
      metrics_(ctx.cfg.run.dir, ctx.comm->is_root(), ctx.cfg.train.max_steps,
               ctx.cfg.run.log_every, !ctx.resume_dir.empty(), ctx.cfg.run.tensorboard) {
  for (size_t i = 0; i < trained.size(); ++i) ck_optims_.push_back({trained[i].optim_prefix, opts_[i].get()});
  // Each rank gets a distinct dropout stream (a resume restores it from the checkpoint).
  torch::manual_seed(ctx.cfg.run.seed * 1000003ULL + ctx.comm->rank());
  if (!ctx.resume_dir.empty()) {
    auto st = load_training_checkpoint(ctx.resume_dir, *ctx.comm, saved_, ck_optims_);
    step_ = st.at("step").get<int64_t>();
    skipped_total_ = st.value("skipped_steps", int64_t{0});
    sampler_.set_cursor(cursor_from_json(st.at("cursor")));
    if (extra_.restore) extra_.restore(st);
    resumed_ = true;
  }
}

std::string TrainLoop::save() {
  nlohmann::json state = extra_.save ? extra_.save() : nlohmann::json::object();
  state["cursor"] = cursor_json(sampler_.cursor());
  state["skipped_steps"] = skipped_total_;
  return save_training_checkpoint(*ctx_.ckpt, *ctx_.comm, step_, saved_, ck_optims_, ms_.cfg,
                                  ms_.tok, state, ctx_.config_text);
}

int TrainLoop::run(const std::function<StepStats()>& compute,
                   const std::function<nlohmann::json()>& evaluate) {
  RLHF_CHECK(opts_.size() == 1, "TrainLoop::run steps one model; this loop trains {}", opts_.size());
  const TrainSection& t = ctx_.cfg.train;
  Communicator& comm = *ctx_.comm;
  return run_steps([&](int64_t step) {
    auto t0 = std::chrono::steady_clock::now();
    StepStats s = compute();
    const double lr = lr_at(step, t.max_steps, t.warmup_steps, t.learning_rate, t.min_lr_ratio);
    StepResult r = optimizer_step(*opts_[0], comm, lr, t.grad_clip, ctx_.cfg.dist.bucket_mb,
                                  std::isfinite(s.loss));
    const double dt = seconds_since(t0);
    nlohmann::json row = {{"loss", s.loss}, {"lr", lr}, {"grad_norm", r.grad_norm},
                          {"tokens_per_s", comm.all_reduce_scalar(s.tokens) / dt},
                          {"skipped", r.skipped}};
    row.update(s.fields);
    return row;
  }, evaluate);
}

int TrainLoop::run_steps(const std::function<nlohmann::json(int64_t)>& iterate,
                         const std::function<nlohmann::json()>& evaluate) {
  const TrainSection& t = ctx_.cfg.train;
  Communicator& comm = *ctx_.comm;
  const int64_t end_step = t.stop_at_step > 0 ? std::min(t.stop_at_step, t.max_steps) : t.max_steps;
  while (step_ < end_step) {
    nlohmann::json row = {{"step", step_ + 1}};
    const Cursor start = sampler_.cursor();
    try {
      row.update(iterate(step_));
    } catch (const StepAbortedError& e) {
      sampler_.set_cursor(start);  // a resume draws this step's batch again
      const std::string ckpt = step_ > 0 ? save() : std::string();  // nothing to keep at step 0
      metrics_.message(fmt::format("# step {} aborted before any update{}", step_ + 1,
                                   ckpt.empty() ? std::string() : fmt::format(
                                       ": checkpointed the {} completed steps ({})", step_, ckpt)));
      metrics_.summary({{"steps", step_}, {"skipped_steps", skipped_total_}, {"complete", false},
                        {"checkpoint", ckpt}, {"error", e.what()}});
      throw;
    }
    ++step_;
    const nlohmann::json& skipped = row.at("skipped");  // SFT/RM: a flag; PPO: a count
    const int64_t n_skipped = skipped.is_boolean() ? int64_t{skipped.get<bool>()} : skipped.get<int64_t>();
    skipped_total_ += n_skipped;
    skipped_in_a_row_ = n_skipped > 0 ? skipped_in_a_row_ + 1 : 0;
    last_loss_ = row.at("loss").get<double>();
    row["skipped_total"] = skipped_total_;
    if (t.eval_every > 0 && step_ % t.eval_every == 0) row.update(evaluate());
    metrics_.log(row);
    if (t.max_skipped_steps > 0 && skipped_in_a_row_ >= t.max_skipped_steps) stop_non_finite();
    if (ctx_.cfg.ckpt.every > 0 && step_ % ctx_.cfg.ckpt.every == 0 && step_ < end_step) save();
    if (stop_requested(comm)) {
      metrics_.message(fmt::format("# stop signal: checkpointing at step {} and exiting with code {}",
                                   step_, kExitPreempted));
      return kExitPreempted;
    }
  }
  return 0;
}

void TrainLoop::stop_non_finite() {
  const std::string why = fmt::format(
      "{} optimizer steps in a row were skipped as non-finite (NaN/Inf loss or gradients), up to "
      "step {} (train.max_skipped_steps = {}): stopping without a checkpoint of this state; "
      "lower train.learning_rate, check the data and the initial weights, then resume from the "
      "last checkpoint", skipped_in_a_row_, step_, ctx_.cfg.train.max_skipped_steps);
  metrics_.summary({{"steps", step_}, {"skipped_steps", skipped_total_}, {"complete", false},
                    {"error", why}});
  throw Error(why);
}

nlohmann::json TrainLoop::finish(const std::string& stage, const nlohmann::json& extra,
                                 const std::function<nlohmann::json()>& evaluate) {
  const std::string ckpt = save();
  nlohmann::json summary = {{"stage", stage}, {"steps", step_}, {"final_loss", last_loss_},
                            {"skipped_steps", skipped_total_}, {"checkpoint", ckpt},
                            {"complete", complete()}};
  summary.update(extra);
  summary.update(evaluate());
  summary["zero_stage"] = ctx_.cfg.dist.zero_stage;
  summary["memory_per_rank"] = held_bytes_per_rank();
  summary["peak_memory"] = peak_memory_report();
  metrics_.summary(summary);
  return summary;
}

nlohmann::json TrainLoop::peak_memory_report() {
  const PeakMemory p = peak_memory(ctx_.device);
  nlohmann::json measured = nlohmann::json::array();
  for (const auto& s : ctx_.comm->all_gather_string(std::to_string(p.bytes)))
    measured.push_back(std::stoll(s));
  const Config& cfg = ctx_.cfg;
  MemoryEstimate e;
  try {  // reads the checkpoint headers the stage started from; the run must not fail here
    e = estimate_memory(cfg, stage_models(cfg), ctx_.comm->world_size(),
                        ctx_.device.is_cuda());
  } catch (const Error& err) {
    return {{"kind", p.kind}, {"measured_bytes", measured}, {"estimate_error", err.what()}};
  }
  return {{"kind", p.kind}, {"measured_bytes", measured}, {"estimate_bytes", e.total()},
          {"estimate", {{"weights", e.weights}, {"grads", e.grads}, {"optimizer", e.optimizer},
                        {"activations", e.activations}, {"logits", e.logits},
                        {"kv_cache", e.kv_cache}, {"offloaded", e.offloaded}}}};
}

nlohmann::json TrainLoop::held_bytes_per_rank() {
  nlohmann::json mine = nlohmann::json::object();
  for (size_t i = 0; i < opts_.size(); ++i) {
    const HeldBytes h = opts_[i]->held();
    mine[ck_optims_[i].prefix] = {{"optimizer_state_bytes", h.optimizer_state},
                                  {"grad_bytes", h.grads}, {"peak_grad_bytes", h.peak_grads},
                                  {"param_bytes", h.params}};
  }
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : ctx_.comm->all_gather_string(mine.dump())) out.push_back(nlohmann::json::parse(s));
  return out;
}

}  // namespace rlhf
