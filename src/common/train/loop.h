// loop.h — the scaffolding SFT and RM share around their loss (PPO has its own iteration):
// parameter broadcast and consistency check, AdamW, the sharded sampler and accumulation count,
// resume from a training checkpoint, metrics, and the step loop read top to bottom:
//   compute (this rank's micro-batches: forward + backward) -> lr -> optimizer_step (all-reduce,
//   global norm, skip on non-finite, clip, AdamW) -> metrics row -> periodic eval / checkpoint
//   -> stop signal;
// then the final checkpoint, held-out evaluation and summary.json.
// Contract: collective — every rank constructs it and calls run() and finish() together. The
// model (already on ctx.device) and ModelSetup outlive the loop; AdamW steps the parameters that
// require grad.
#pragma once
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/train/metrics.h"
#include "common/train/run.h"
#include "common/train/train_common.h"

namespace rlhf {

// What a stage's compute step reports.
struct StepStats {
  double loss = NAN;  // the global batch's mean loss (already all-reduced)
  double tokens = 0;  // tokens this rank processed (-> tokens_per_s over all ranks)
  nlohmann::json fields = nlohmann::json::object();  // stage metrics for this step's row
};

class SingleModelLoop {
 public:
  SingleModelLoop(RunContext& ctx, torch::nn::Module& model, const ModelSetup& ms,
                  CkptModel ck_model, const std::string& optim_prefix, int64_t dataset_size);

  int64_t n_params() const { return n_params_; }
  int64_t accum() const { return accum_; }            // micro-batches per rank per step
  int64_t step() const { return step_; }
  bool complete() const { return step_ >= ctx_.cfg.train.max_steps; }
  ShardedSampler& sampler() { return sampler_; }
  MetricsLogger& metrics() { return metrics_; }
  nlohmann::json& model_extra() { return ck_models_[0].extra; }  // written with model.h5

  // Steps until train.max_steps (or train.stop_at_step, or a stop signal: checkpoint + exit code
  // kExitPreempted). `evaluate` runs every train.eval_every steps; its keys join the row.
  int run(const std::function<StepStats()>& compute,
          const std::function<nlohmann::json()>& evaluate);
  // Final checkpoint, evaluation and summary.json ({stage, steps, final_loss, skipped_steps,
  // checkpoint, complete} + extra + evaluation); returns the summary.
  nlohmann::json finish(const std::string& stage, const nlohmann::json& extra,
                        const std::function<nlohmann::json()>& evaluate);

 private:
  std::string save();

  RunContext& ctx_;
  const ModelSetup& ms_;
  int64_t n_params_ = 0;
  AdamW opt_;
  ShardedSampler sampler_;
  int64_t accum_;
  std::vector<CkptModel> ck_models_;
  std::vector<CkptOptim> ck_optims_;
  int64_t step_ = 0, skipped_total_ = 0;
  double last_loss_ = NAN;
  MetricsLogger metrics_;
};

}  // namespace rlhf
