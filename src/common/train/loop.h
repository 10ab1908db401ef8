// loop.h — the training loop every stage shares (SFT, RM, PPO): parameter consistency check and
// broadcast, one AdamW per trained model, seeding, the sharded sampler and accumulation count,
// resume from a training checkpoint (weights, moments, RNG, cursor, the stage's extra state),
// metrics, the step loop read top to bottom:
//   step (SFT/RM: compute = this rank's micro-batches, forward + backward -> lr -> optimizer_step
//   (all-reduce, global norm, skip on non-finite, clip, AdamW); PPO: one iteration that steps its
//   optimizers itself) -> metrics row -> periodic eval / checkpoint -> stop signal;
// then the final checkpoint, held-out evaluation and summary.json.
// Contract: collective — every rank constructs it and calls run*/finish together. The models
// (already on ctx.device) and ModelSetup outlive the loop; each AdamW steps the parameters of its
// model that require grad, sharded over ranks per dist.zero_stage (train/zero.h): stages that
// train through run() or ppo_update call AdamW::after_backward after every micro-batch's backward.
#pragma once
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/train/metrics.h"
#include "common/train/run.h"
#include "common/train/train_common.h"

namespace rlhf {

// What a stage's compute step reports (SFT/RM).
struct StepStats {
  double loss = NAN;  // the global batch's mean loss (already all-reduced)
  double tokens = 0;  // tokens this rank processed (-> tokens_per_s over all ranks)
  nlohmann::json fields = nlohmann::json::object();  // stage metrics for this step's row
};

// A model the loop trains: its AdamW moments are saved in optim.h5 under `optim_prefix`.
struct TrainedModel {
  torch::nn::Module* module;
  std::string optim_prefix;
};

// State a stage keeps beside the loop's (e.g. PPO's β): `save` is written into state.yaml with
// every checkpoint, `restore` receives state.yaml's content on resume (called by the constructor).
struct ExtraState {
  std::function<nlohmann::json()> save;
  std::function<void(const nlohmann::json&)> restore;
};

// Thrown by a step before it changed any state (models, optimizers, a stage's extra state; the
// sampler may have drawn the step's batch): run_steps rewinds the sampler to the step's start,
// checkpoints the completed steps, records the error in summary.json and rethrows, so a resume
// repeats the step from the same batch. Collective: every rank throws it in the same step (e.g.
// after an all-reduce of a failure flag), since the checkpoint is.
struct StepAbortedError : Error {
  using Error::Error;
};

class TrainLoop {
 public:
  // saved: the files a checkpoint writes (model.h5 first); trained: the models with an optimizer
  // (in a fixed order: parameters are broadcast and counted in it); dataset_size: the sampler's n.
  TrainLoop(RunContext& ctx, const ModelSetup& ms, std::vector<CkptModel> saved,
            const std::vector<TrainedModel>& trained, int64_t dataset_size, ExtraState extra = {});

  int64_t n_params() const { return n_params_; }      // of all trained models
  int64_t accum() const { return accum_; }            // micro-batches per rank per step
  int64_t step() const { return step_; }
  bool complete() const { return step_ >= ctx_.cfg.train.max_steps; }
  bool resumed() const { return resumed_; }
  AdamW& optimizer(size_t i) { return *opts_.at(i); }
  ShardedSampler& sampler() { return sampler_; }
  MetricsLogger& metrics() { return metrics_; }
  nlohmann::json& model_extra() { return saved_[0].extra; }  // written with model.h5

  // SFT/RM: steps until train.max_steps (or train.stop_at_step, or a stop signal: checkpoint +
  // exit code kExitPreempted); each step is compute() then the optimizer step of the (one)
  // trained model. `evaluate` runs every train.eval_every steps; its keys join the row.
  int run(const std::function<StepStats()>& compute,
          const std::function<nlohmann::json()>& evaluate);
  // Stages whose step takes its own optimizer steps (PPO): iterate(step) returns the step's row
  // with at least "loss" and "skipped" (optimizer steps skipped in it); otherwise as run().
  // An iterate that throws StepAbortedError: checkpoint of the completed steps, then rethrown.
  int run_steps(const std::function<nlohmann::json(int64_t step)>& iterate,
                const std::function<nlohmann::json()>& evaluate);
  // Final checkpoint, evaluation and summary.json ({stage, steps, final_loss, skipped_steps,
  // checkpoint, complete} + extra + evaluation + zero_stage and memory_per_rank: for each rank,
  // for each trained model (by optim prefix) {optimizer_state_bytes, grad_bytes, param_bytes}
  // measured from the tensors that rank holds, see HeldBytes in train/zero.h); returns it.
  nlohmann::json finish(const std::string& stage, const nlohmann::json& extra,
                        const std::function<nlohmann::json()>& evaluate);

 private:
  std::string save();
  nlohmann::json held_bytes_per_rank();  // collective
  // summary.json "peak_memory": measured peak per rank (common/core/memory.h: CUDA allocator
  // peak, or the process's max RSS on CPU) next to the dry-run estimate (dry_run.h). Collective.
  nlohmann::json peak_memory_report();

  RunContext& ctx_;
  const ModelSetup& ms_;
  int64_t n_params_ = 0;
  std::vector<std::unique_ptr<AdamW>> opts_;
  ShardedSampler sampler_;
  int64_t accum_;
  std::vector<CkptModel> saved_;
  std::vector<CkptOptim> ck_optims_;
  ExtraState extra_;
  int64_t step_ = 0, skipped_total_ = 0, skipped_in_a_row_ = 0;
  [[noreturn]] void stop_non_finite();  // summary (complete: false), then rlhf::Error
  double last_loss_ = NAN;
  bool resumed_ = false;
  MetricsLogger metrics_;
};

}  // namespace rlhf
