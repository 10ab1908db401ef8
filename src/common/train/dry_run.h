// dry_run.h — `sft_train / rm_train / ppo_train --dry-run`: print the resolved config, every
// model of the stage with its parameter count, and an estimate of peak memory per rank; then
// exit without creating run.dir, reading datasets or allocating a model. Model configs come
// from the init / reward-model / critic checkpoints' headers (no tensors are read).
//
// The memory estimate, per rank and per model (W ranks, Z = dist.zero_stage, train/zero.h):
//   weights    4 B per parameter (fp32 master weights); a trained model's / W at Z >= 3 (a
//              planning number: one block and the embeddings and heads are gathered in full during
//              a step on top of it). Frozen weights: 2 B with ppo.frozen_dtype bf16 (the reward
//              model, the reference; with LoRA the actor's and critic's base). With model.lora
//              the trained part is the adapters (lora_parameter_count) plus a score head; the
//              base is frozen; the PPO reference is the actor's base and costs nothing. With
//              ppo.offload_frozen the reward model (and a separate reference) are `offloaded`:
//              on the device only while scoring.
//   grads      4 B per trained parameter, / W at Z >= 2
//   optimizer  8 B per trained parameter (AdamW m and v, fp32), / W at Z >= 1
//   activations per micro-batch of b rows x T tokens, e bytes per element (2 under bf16
//              autocast on CUDA, else 4): L x b x T x (16 C + 3 F) x e, or with activation
//              checkpointing L x b x T x C x e + one block's share; plus logits b x T x V x 12 B
//              (logits, log-softmax and its gradient in fp32)
//   kv cache   (PPO rollouts) 2 x L x B x (P + N) x n_kv_head x head_dim x e for the actor, B =
//              rows per rank per iteration
//   total      weights + grads + optimizer + max(activations + logits, kv cache + offloaded):
//              generation and scoring come before the update, not at the same time.
// It is a planning number (no allocator overhead, workspace or fragmentation; expect the real
// peak to be up to ~1.3x): it has not yet been checked against a GPU run's peak. summary.json
// records it next to the measured peak (common/core/memory.h).
#pragma once
#include <algorithm>
#include <string>
#include <vector>

#include "common/model/model.h"
#include "common/train/config.h"
#include "common/train/stage_spec.h"

namespace rlhf {

struct ModelMemory {  // one model's share of the estimate (bytes per rank)
  std::string role;
  int64_t params = 0, trained = 0;
  double weights = 0, grads = 0, optimizer = 0;
};

struct MemoryEstimate {
  double weights = 0, grads = 0, optimizer = 0, activations = 0, logits = 0, kv_cache = 0;  // bytes
  double offloaded = 0;  // frozen weights brought to the device only for scoring (not in weights)
  std::vector<ModelMemory> models;
  double total() const {
    return weights + grads + optimizer + std::max(activations + logits, kv_cache + offloaded);
  }
};
// The architecture of the checkpoint `ckpt` (a run directory or model file) from its header alone;
// `key` names the setting in the error when ckpt is "" (StageSpec::models uses it).
ModelConfig checkpoint_model_config(const std::string& ckpt, const char* key);

// One model's parameters, trained parameters and bytes under the options (see above).
ModelMemory model_memory(const StageModel& m, const Config& cfg, int world_size);

// The models cfg's stage builds (StageSpec::models, from cfg and the checkpoints it names), with
// lora / shared / frozen_bf16 / offloaded filled in. Throws like the trainer.
std::vector<StageModel> stage_models(const Config& cfg);
MemoryEstimate estimate_memory(const Config& cfg, const std::vector<StageModel>& models, int world_size, bool cuda);
// Fails fast, before anything is allocated, when the estimate for this rank exceeds 4x the
// memory it can count on (on CPU: physical memory / ranks on this node): sizes such as
// train.micro_batch_size = 10^9 would otherwise grow until the machine swaps or the allocator
// gives up mid-step. The factor leaves room for the estimate's pessimism (full logits); the error
// names the batch and length keys and --dry-run. RLHF_SKIP_MEMORY_CHECK=1 turns it off. CUDA is
// not checked here (its allocator fails cleanly with the sizes it wanted).
void check_memory_fits(const Config& cfg, int world_size, int local_size, bool cuda);
// Prints the report to stdout; returns 0.
int dry_run(const Config& cfg, int world_size);

}  // namespace rlhf
