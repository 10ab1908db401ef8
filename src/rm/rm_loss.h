// rm_loss.h — InstructGPT reward-model ranking loss over K ranked responses per prompt.
//
// Contract:
// - rewards [N]: one scalar reward per response, all prompts' responses concatenated; float dtype,
//   on any device. The loss is differentiable w.r.t. rewards; the counters are host values
//   (one host sync per call).
// - group_offsets (size G+1, off[0] = 0, non-decreasing, off[G] = N): the responses of prompt g
//   are rewards[off[g] .. off[g+1]).
// - ranks (size N): 0 = best; ties allowed. Tied responses form no pair; a group with fewer than
//   one ordered pair (K < 2 or all ties) contributes nothing and is not counted in `groups`.
// Called by the RM trainer (training step) and rlhf_eval (accuracy).
#pragma once
#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "common/data/ranked_pairs.h"  // PairNormalizer, ranked_pairs

namespace rlhf {

struct RankingLoss {
  torch::Tensor loss;       // scalar; 0 (still attached to rewards) when no group has a pair
  int64_t pairs = 0;        // ordered pairs over all groups
  int64_t correct = 0;      // pairs with r_better > r_worse (strictly)
  double margin_sum = 0.0;  // Σ over pairs of (r_better - r_worse)
  int64_t groups = 0;       // groups with >= 1 pair
};

// Ouyang et al. 2022 ("Training language models to follow instructions with human feedback"),
// eq. 1:  loss(θ) = -1/C(K,2) · E_{(x, y_w, y_l)} [ log σ(r_θ(x, y_w) - r_θ(x, y_l)) ]
// Here, per group g of K_g responses with ordered pairs P_g = {(i, j): rank_i < rank_j}:
//   L_g  = (1/n_g) Σ_{(i,j) ∈ P_g} softplus(-(r_i - r_j))      (softplus(-d) = -log σ(d))
//   n_g  = C(K_g, 2) (Paper) or |P_g| (StrictPairs)
//   loss = mean of L_g over the groups with |P_g| ≥ 1   (pairs and weights: ranked_pairs)
// K = 2 is the ordinary pairwise loss -log σ(r_chosen - r_rejected).
// Vectorised: all pairs of all groups are gathered at once with per-pair weights 1/(n_g·G').
RankingLoss kwise_ranking_loss(const torch::Tensor& rewards,
                               const std::vector<int64_t>& group_offsets,
                               const std::vector<int32_t>& ranks,
                               PairNormalizer normalizer = PairNormalizer::Paper);

}  // namespace rlhf
