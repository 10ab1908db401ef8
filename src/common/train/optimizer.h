// optimizer.h — AdamW (decoupled weight decay, only on >= 2-D weights), the warmup + cosine LR
// schedule, and the synchronised optimizer step used by every stage:
//   all-reduce gradients (bucketed) -> global norm -> skip on non-finite -> clip -> AdamW step.
// Contract: every rank calls optimizer_step() with identical (already all-reduced) gradients, so
// every rank computes the same norm, makes the same skip decision and takes the same step.
// State (moments, step count) is saved/loaded by parameter name for exact resume.
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/train/config.h"
#include "common/dist/dist.h"
#include "common/core/h5.h"

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
  void step(double lr);  // one update from the current .grad()s
  void zero_grad();
  int64_t steps() const { return step_; }
  const std::vector<NamedParam>& params() const { return params_; }
  // CUDA fp32 parameters take at::_fused_adamw_ (libtorch >= 2) unless this is false (tests
  // compare both paths).
  bool allow_fused = true;
  // Writes/reads <prefix>/<name>/exp_avg, exp_avg_sq and the attribute <prefix>_step.
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
};

// Learning rate for optimizer step `step` (0-based): linear warmup over warmup_steps, then cosine
// from base_lr down to base_lr * min_lr_ratio at max_steps.
double lr_at(int64_t step, int64_t max_steps, int64_t warmup_steps, double base_lr, double min_lr_ratio);

struct StepResult {
  double grad_norm = 0;  // before clipping
  bool skipped = false;  // non-finite loss or gradient: no update was made
};

// all-reduce(avg) -> global L2 norm -> skip if !finite(norm) or !loss_finite -> clip -> step.
StepResult optimizer_step(AdamW& opt, Communicator& comm, double lr, double grad_clip,
                          double bucket_mb, bool loss_finite);

// micro-batches per rank per step; throws naming the three numbers when they don't divide.
int64_t accumulation_steps(int64_t global_batch, int64_t micro_batch, int world_size,
                           const std::string& what = "train.global_batch_size");

}  // namespace rlhf
