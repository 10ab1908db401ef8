// zero.h — ZeRO data parallelism (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward
// Training Trillion Parameter Models", stages P_os, P_os+g, P_os+g+p) for one trained model's
// AdamW, chosen by dist.zero_stage:
//   0  every rank holds the full parameters, gradients and moments (optimizer.h's path).
//   1  moments sharded: at the step the gradients are reduce-scattered (average), AdamW updates
//      this rank's shard only, and the updated shards are all-gathered into every rank's params.
//   2  + gradients: during the backward, as soon as a transformer block's parameter gradients are
//      complete (BlockParamHooks::after_block_backward), that block's group is reduce-scattered
//      (sum) into a persistent [S_g] shard accumulator and its full .grad freed; the rest group
//      (embeddings, final norm, heads) after the backward (after_backward). So at most the rest
//      group's and one block's full gradients exist at a time (HeldBytes::peak_grads). The hooks'
//      reduce-scatters are collectives in the autograd engine's order, the same on every rank
//      when every rank runs the same passes. In a span where ranks may not (GatheredParams: the
//      RM step, whose prompt-prefix cache and length buckets depend on the data) a block is
//      reduce-scattered at the last of its backward passes instead; these come in block order
//      L-1, ..., 0 on every rank whatever the number of passes (zero.cpp).
//   3  + parameters: a transformer block's parameters are held as this rank's shard only, gathered
//      just before the block runs (forward, and the recompute of a checkpointed block in backward)
//      and freed after; its gradients are reduce-scattered as soon as its backward is done. The
//      other parameters (embeddings, final norm, heads) are gathered at the first trunk pass of a
//      step and freed after the update. Needs activation checkpointing (config check). A span
//      that holds the whole model (gather_params: GatheredParams in optimizer.h) skips the
//      per-block hooks; a backward inside it is reduce-scattered by after_backward (RM steps).
//
// Layout: the trainable parameters (named_params order) form groups: one per transformer block
// of each trunk found in the model, in order, then one "rest" group for all others. Group g is
// flattened in parameter order into N_g elements, padded with zeros to P_g = ceil(N_g / W) * W,
// and rank r owns elements [r·S_g, (r+1)·S_g), S_g = P_g / W. A rank's optimizer state is the
// concatenation of its shards over groups: Σ_g S_g ≈ N / W elements each of m and v.
//
// The step on the shard (identical per element to AdamW::step, so stage 0 and stage k agree up to
// the summation order of the gradient average):
//   g  = Σ_micro Σ_ranks grad / W                   (reduce-scatter; stage 1 sums micro-batches
//                                                   locally first, stages 2/3 per micro-batch)
//   ‖g‖ = sqrt(all_reduce_sum(Σ_shard g²));  skip (no update, moments kept) if ‖g‖ or a rank's
//   loss is non-finite;  g *= clip / (‖g‖ + 1e-6) when ‖g‖ > clip > 0
//   p *= 1 - lr·wd          on elements of >= 2-D parameters only (the shard's decay ranges)
//   m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²;  p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + ε)
// A parameter that has no gradient on any rank in a step is left alone (no decay, moments kept),
// as AdamW::step skips an undefined .grad.
//
// Checkpoints stay by parameter name (optim.h5 as at stage 0): gather_full() all-gathers the full
// moments (and at stage 3 the parameters) before rank 0 writes; on load every rank reads the full
// moments and keeps its shard, so any stage and any rank count can resume any checkpoint.
//
// Contract: collective — every rank constructs the engine with the same model and calls every
// method in the same order. Parameters must be one dtype on one device, dense and contiguous.
// The engine sets the model's trunks' block hooks (stages 2, 3) and unsets them on destruction.
#pragma once
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "common/dist/dist.h"
#include "common/model/model.h"

namespace rlhf {

enum class ZeroStage { Off = 0, Optimizer = 1, Gradients = 2, Parameters = 3 };
// dist.zero_stage's value -> the enum; throws rlhf::Error naming the key outside [0, 3].
ZeroStage zero_stage_from(int64_t value);

struct AdamWHyper {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
};

// Bytes held by one rank for one trained model (measured from the tensors themselves).
struct HeldBytes {
  int64_t optimizer_state = 0;  // AdamW m + v
  int64_t grads = 0;            // gradient tensors at the optimizer step (the largest seen)
  int64_t peak_grads = 0;       // the most bytes of full (unsharded) .grad alive at once,
                                // measured before each reduce-scatter and at the step
  int64_t params = 0;           // parameter storage held between steps (after the update)
};

struct ZeroStepResult {
  double grad_norm = 0;
  bool skipped = false;
};

class ZeroEngine {
 public:
  // params: the model's trainable parameters (named_params(model)), equal on every rank.
  ZeroEngine(ZeroStage stage, Communicator& comm, torch::nn::Module& model,
             const std::vector<torch::Tensor>& params);
  ~ZeroEngine();
  ZeroEngine(const ZeroEngine&) = delete;
  ZeroEngine& operator=(const ZeroEngine&) = delete;
  ZeroStage stage() const { return stage_; }

  // After each micro-batch's backward. Stage >= 2: reduce-scatter the groups' gradients into the
  // shard accumulators and free .grad (the groups the block hooks have not done).
  void after_backward();
  // The step (see the header comment); `step` is AdamW's step count (incremented unless skipped).
  ZeroStepResult step(const AdamWHyper& h, double lr, double grad_clip, bool loss_finite,
                      int64_t& step);

  // Full moments of parameter i ([param shape]) after gather_moments(); load_moments takes this
  // rank's shard from full moments given per parameter.
  void gather_moments(std::vector<torch::Tensor>& m, std::vector<torch::Tensor>& v);
  void load_moments(const std::vector<torch::Tensor>& m, const std::vector<torch::Tensor>& v);
  // Stage 3: every parameter full until release_params(write_back); with write_back the full
  // values (e.g. just loaded from a checkpoint) become this rank's shards. Stage 2: until
  // release_params ranks may run different numbers of passes (see stage 2 above). Else no-op.
  void gather_params();
  void release_params(bool write_back);

  HeldBytes held() const { return held_; }

  class TrunkHooks;  // zero.cpp: the BlockParamHooks of one trunk

 private:
  struct Group;
  int make_groups(torch::nn::Module& model, std::vector<int>& group_of_block);
  void gather_group(Group& g);
  void release_group(Group& g);
  void scatter_grads(Group& g);          // stage >= 2: .grad -> shard accumulator, free .grad
  torch::Tensor flat_grads(const Group& g);  // [P_g]: this rank's .grad of the group, zeros elsewhere
  void measure_params();
  void record_live_grads();              // held_.peak_grads

  ZeroStage stage_;
  Communicator& comm_;
  std::vector<torch::Tensor> params_;
  std::vector<std::vector<int64_t>> shape_;  // per parameter (stage 3 frees the tensors)
  std::vector<int64_t> numel_;
  std::vector<Group> groups_;
  std::vector<std::unique_ptr<TrunkHooks>> hooks_;
  std::vector<TransformerImpl*> trunks_;
  torch::Tensor m_, v_;           // [Σ_g S_g] moments of this rank's shards
  torch::Tensor grads_;           // [Σ_g S_g] gradient shards (stage 1: during the step only)
  std::vector<float> has_grad_;   // per parameter: this rank saw a gradient since the last step
  HeldBytes held_;
  bool pinned_ = false;           // gather_params() holds every group (stage 3)
  bool varying_passes_ = false;   // stage 2 inside gather_params(): scatter at a block's last firing
};

}  // namespace rlhf
