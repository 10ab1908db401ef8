// rollout_engine.h — the rollout engine: a paged KV cache, continuous batching and one prefill per
// distinct prompt shared by its samples (as vLLM's scheduler and block manager, in one pass).
//
// Contract (generate_paged):
// - Inputs and output as generate() with row seeds (generate.h): prompts [B, P] int64
//   left-padded, prompt_mask [B, P] bool, row_seeds [B]; the output keeps that layout
//   ([B, P + N] tokens, [B, N] response mask and log-probs) with N = the longest response.
// - Groups: rows whose real prompt tokens are identical (wherever they sit in the batch) form one
//   group. A group's prompt is prefilled once; its full KV blocks are shared by every sample
//   (reference counted) and its last, partly filled block is copied for each sample but one
//   before the first generated token is written (copy-on-write).
// - Continuous batching: groups enter in order of their first row while the decoding rows plus
//   the group's samples fit max_batch_rows and the prefill pass's padded prompt positions fit
//   max_batch_tokens (the first group always enters). A row that ends frees its blocks at once
//   and the next waiting group enters at the following step. The engine runs until the queue is
//   empty.
// - Sampling: the one distribution of generate(): row b draws its first token from its prompt's
//   last logits and every later token from its own step's logits, with noise from its own
//   generator (seeded row_seeds[b]) drawn once per token in order: the same draws as the static
//   per-row sampler, so a row's tokens do not depend on which rows share its batch (up to the
//   round-off of a different batch shape). Log-probs are recorded as generate() records them.
// - Memory: blocks live in one pool per layer sized for the worst case (every sample running to
//   max_new_tokens) but never initialised as a whole: a block is zeroed when taken, so on the
//   CPU the resident KV memory is the blocks in use (on CUDA the pool is allocated in full).
//   peak_kv_bytes counts the blocks in use plus the prefill pass's temporary cache at their
//   largest.
// - Runs under NoGradGuard, in eval mode (restored afterwards); host syncs: one per decode step
//   (the drawn tokens, to end rows and hand out blocks).
#pragma once
#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "common/model/generate.h"
#include "common/model/model.h"

namespace rlhf {

GenerateOutput generate_paged(CausalLM& model, const torch::Tensor& prompts,
                              const torch::Tensor& prompt_mask, const SamplingConfig& cfg,
                              const std::vector<uint64_t>& row_seeds);

// Rows with identical real prompt tokens: group id per row [B] (ids in order of first
// appearance). prompts [B, P] / prompt_mask [B, P] on the CPU.
std::vector<int64_t> prompt_groups(const torch::Tensor& prompts, const torch::Tensor& prompt_mask);

}  // namespace rlhf
