// dry_run.h — `sft_train / rm_train / ppo_train --dry-run`: print the resolved config, every
// model of the stage with its parameter count, and an estimate of peak memory per rank; then
// exit without creating run.dir, reading datasets or allocating a model. Model configs come
// from the init / reward-model / critic checkpoints' headers (no tensors are read).
//
// The memory estimate (per rank, no LoRA; W ranks, Z = dist.zero_stage, train/zero.h):
//   weights    4 B per parameter of every model (fp32 master weights; frozen ones too); a trained
//              model's / W at Z >= 3 (a planning number: one block and the embeddings and heads
//              are gathered in full during a step on top of it)
//   grads      4 B per trainable parameter, / W at Z >= 2
//   optimizer  8 B per trainable parameter (AdamW m and v, fp32), / W at Z >= 1
//   activations per micro-batch of b rows x T tokens, e bytes per element (2 under bf16
//              autocast on CUDA, else 4): L x b x T x (16 C + 3 F) x e, or with activation
//              checkpointing L x b x T x C x e + one block's share; plus logits b x T x V x 12 B
//              (logits, log-softmax and its gradient in fp32)
//   kv cache   (PPO rollouts) 2 x L x B x (P + N) x n_kv_head x head_dim x e for the actor, B =
//              rows per rank per iteration
// It is a planning number (no allocator overhead, workspace or fragmentation; expect the real
// peak to be up to ~1.3x): it has not yet been checked against a GPU run's peak.
#pragma once
#include <string>
#include <vector>

#include "common/model/model.h"
#include "common/train/config.h"

namespace rlhf {

struct StageModel {
  std::string role;  // "policy", "reward model", "actor", "reference", "critic", "reward"
  ModelConfig cfg;
  bool scalar = false, trainable = false;
};

struct MemoryEstimate {
  double weights = 0, grads = 0, optimizer = 0, activations = 0, logits = 0, kv_cache = 0;  // bytes
  double total() const { return weights + grads + optimizer + activations + logits + kv_cache; }
};

// The models a stage builds, from cfg (and the checkpoints it names). Throws like the trainer.
std::vector<StageModel> stage_models(Stage stage, const Config& cfg);
MemoryEstimate estimate_memory(Stage stage, const Config& cfg, const std::vector<StageModel>& models,
                               int world_size, bool cuda);
// Fails fast, before anything is allocated, when the estimate for this rank exceeds 4x the
// memory it can count on (on CPU: physical memory / ranks on this node): sizes such as
// train.micro_batch_size = 10^9 would otherwise grow until the machine swaps or the allocator
// gives up mid-step. The factor leaves room for the estimate's pessimism (full logits); the error
// names the batch and length keys and --dry-run. RLHF_SKIP_MEMORY_CHECK=1 turns it off. CUDA is
// not checked here (its allocator fails cleanly with the sizes it wanted).
void check_memory_fits(Stage stage, const Config& cfg, int world_size, int local_size, bool cuda);
// Prints the report to stdout; returns 0.
int dry_run(Stage stage, const Config& cfg, int world_size);

}  // namespace rlhf
