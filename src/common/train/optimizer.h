// optimizer.h — AdamW (decoupled weight decay, only on >= 2-D weights), the warmup + cosine LR
// schedule, and the synchronised optimizer step used by every stage:
//   all-reduce gradients (bucketed) -> global norm -> skip on non-finite -> clip -> AdamW step.
// Contract: every rank calls optimizer_step() with identical (already all-reduced) gradients, so
// every rank computes the same norm, makes the same skip decision and takes the same step.
// State (moments, step count) is saved/loaded by parameter name for exact resume.
// ZeRO (dist.zero_stage >= 1, train/zero.h): after shard() the moments (and gradients,
// parameters) are this rank's shard and optimizer_step takes the sharded path; checkpoints keep
// the by-name layout (gather_full before save, every rank keeps its shard on load).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/train/config.h"
#include "common/dist/dist.h"
#include "common/core/h5.h"
#include "common/train/zero.h"

namespace rlhf {

struct NamedParam {
  std::string name;
  torch::Tensor param;
};
std::vector<NamedParam> named_params(torch::nn::Module& m, const std::string& prefix = "");
std::vector<torch::Tensor> tensors_of(const std::vector<NamedParam>& ps);

class AdamW {
 public:
  AdamW(std::vector<NamedParam> params, double beta1, double beta2, double eps, double weight_decay);
  ~AdamW();
  void step(double lr);  // one update from the current .grad()s (stage 0)
  void zero_grad();
  int64_t steps() const { return step_; }
  AdamWHyper hyper() const { return {b1_, b2_, eps_, wd_}; }

  // ZeRO stage >= 1: shard the state over comm's ranks (`model` owns the parameters: its trunks'
  // blocks form the stage-3 groups). Collective; call once, before any step, with the parameters
  // equal on every rank. Stage Off: nothing changes.
  void shard(ZeroStage stage, Communicator& comm, torch::nn::Module& model);
  ZeroEngine* zero() { return zero_.get(); }
  ZeroStage zero_stage() const { return zero_ ? zero_->stage() : ZeroStage::Off; }
  // After every micro-batch's backward: stage >= 2 reduce-scatters and frees the gradients
  // (collective there); otherwise nothing.
  void after_backward() {
    if (zero_) zero_->after_backward();
  }
  // Collective when sharded: the full moments by parameter (and at stage 3 the full parameters)
  // for save() / loading weights, until release_full() (which keeps weights loaded meanwhile).
  void gather_full();
  void release_full();
  // Bytes this rank holds for the model (stage 0: the full tensors; see HeldBytes).
  HeldBytes held() const;
  void record_held_grads();  // optimizer_step: the gradient bytes at this step
  // The sharded step (optimizer_step's ZeRO path): norm, skip, clip and AdamW on this rank's shard.
  ZeroStepResult step_sharded(double lr, double grad_clip, bool loss_finite);
  const std::vector<NamedParam>& params() const { return params_; }
  // CUDA fp32 parameters take at::_fused_adamw_ (libtorch >= 2) unless this is false (tests
  // compare both paths).
  bool allow_fused = true;
  // Writes/reads <prefix>/<name>/exp_avg, exp_avg_sq and the attribute <prefix>_step (the full
  // moments by name at every stage). REQUIRES when sharded: between gather_full / release_full.
  void save(H5File& f, const std::string& prefix) const;
  void load(const H5File& f, const std::string& prefix);

 private:
  std::vector<NamedParam> params_;
  std::vector<torch::Tensor> m_, v_;
  std::vector<bool> decay_;
  double b1_, b2_, eps_, wd_;
  int64_t step_ = 0;
  torch::Tensor step_t_;  // CUDA fused path: the step count as a device scalar
  bool step_fused(double lr);
  std::unique_ptr<ZeroEngine> zero_;
  bool gathered_ = false;  // m_ / v_ hold gathered full moments (sharded: between gather/release)
  int64_t held_grads_ = 0;
};

// Stage 3: the full parameters for a span (PPO's rollouts, whose CUDA graphs capture the weights'
// addresses; spans where ranks run different trunk passes). Stage 2: a span where ranks may run
// different numbers of passes (zero.h). Nothing at other stages. Collective.
class GatheredParams {
 public:
  explicit GatheredParams(AdamW& opt) : opt_(opt) {
    if (opt_.zero()) opt_.zero()->gather_params();
  }
  ~GatheredParams() {
    if (opt_.zero()) opt_.zero()->release_params(false);
  }
  GatheredParams(const GatheredParams&) = delete;
  GatheredParams& operator=(const GatheredParams&) = delete;

 private:
  AdamW& opt_;
};

// Learning rate for optimizer step `step` (0-based): linear warmup over warmup_steps, then cosine
// from base_lr down to base_lr * min_lr_ratio at max_steps.
double lr_at(int64_t step, int64_t max_steps, int64_t warmup_steps, double base_lr, double min_lr_ratio);

struct StepResult {
  double grad_norm = 0;  // before clipping
  bool skipped = false;  // non-finite loss or gradient: no update was made
};

// all-reduce(avg) -> global L2 norm -> skip if !finite(norm) or !loss_finite -> clip -> step.
// Sharded (opt.zero()): ZeroEngine::step, the same on this rank's shard.
StepResult optimizer_step(AdamW& opt, Communicator& comm, double lr, double grad_clip,
                          double bucket_mb, bool loss_finite);

// Micro-batches per rank per step for global_samples samples of rows_per_sample rows each (PPO:
// prompts of ppo.samples_per_prompt responses), micro_batch rows per forward. When they do not
// divide, throws naming the numbers and ending with what fixes it: a train.micro_batch_size that
// divides the rows per rank (the largest one not above today's), or `what` as a multiple.
int64_t accumulation_steps(int64_t global_samples, int64_t micro_batch, int world_size,
                           const std::string& what = "train.global_batch_size", int64_t rows_per_sample = 1);

}  // namespace rlhf
