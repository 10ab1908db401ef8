// preference_batch.h — ranked groups as causal-LM inputs, and the sequence log-probabilities DPO
// compares (dpo_loss.h).
//
// Contract:
// - ranked_group_batch: local (no collectives), host only. Every response of `groups` (dataset
//   group indices of a RankedData) becomes one training row [BOS] prompt response [EOS] (batch.h's
//   framing and truncation rule: the prompt loses its start first), in group order; `offsets`
//   (size G+1) and `ranks` (size R) describe the groups as dpo_loss expects. packing
//   (train.packing): the rows packed padding-free (batch.h pack_rows).
// - sequence_logprobs: Σ_t log π(tokens[b,t] | tokens[b,<t]) over the row's target positions
//   (loss_mask: response tokens + EOS; chat rows: the assistant spans) -> [B] float32. Runs the
//   trunk once; only the target positions go through the LM head (no [B, T, V] logits). Gradients
//   flow when grad mode is on. A row without targets gets 0.
#pragma once
#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "common/data/batch.h"
#include "common/data/data.h"
#include "common/model/model.h"

namespace rlhf {

struct GroupBatch {
  SeqBatch seq;                  // [R, T] rows, R = responses of the groups
  std::vector<int64_t> offsets;  // [G + 1] group boundaries into R
  std::vector<int32_t> ranks;    // [R] 0 = best
  std::vector<int64_t> responses;  // [R] the rows' response indices in the dataset
};

GroupBatch ranked_group_batch(const RankedData& d, const std::vector<int64_t>& groups,
                              const SpecialIds& ids, int64_t max_len, bool packing = false);

torch::Tensor sequence_logprobs(CausalLM& model, const SeqBatch& b, const torch::Device& dev);

// The number of target positions sequence_logprobs sums per row: [B] float32 on the CPU (the
// lengths dpo.ipo_average divides by).
torch::Tensor target_counts(const SeqBatch& b);

}  // namespace rlhf
