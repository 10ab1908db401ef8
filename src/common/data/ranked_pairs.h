// ranked_pairs.h — the ordered (better, worse) pairs of ranked groups and their weights in a
// group-averaged pairwise loss: the RM's K-wise ranking loss (rm/rm_loss.h) and DPO
// (dpo/dpo_loss.h) enumerate and weight pairs with this one function.
//
// Contract: host only (no tensors, no collectives).
// - group_offsets (size G+1, off[0] = 0, non-decreasing, off[G] = N): group g is responses
//   [off[g], off[g+1]); ranks (size N): 0 = best, ties allowed. Other offsets throw rlhf::Error
//   naming `caller`.
// - Pairs P_g = {(i, j) of group g : rank_i < rank_j}, listed in group order, then i, then j
//   ascending. Tied responses form no pair (counted in `ties`); a group with no pair (K < 2 or all
//   ties) contributes nothing and is not counted in `groups`.
// - weight_p = 1 / (n_g · G') with n_g = C(K_g, 2) (Paper) or |P_g| (StrictPairs) and G' the
//   groups with >= 1 pair, so Σ_p weight_p · ℓ_p = mean over groups of (1/n_g) Σ_{p ∈ P_g} ℓ_p.
#pragma once
#include <cstdint>
#include <vector>

#include "common/core/strings.h"

namespace rlhf {

// How a group's pair losses are normalised (rm.pair_normalizer).
//   Paper:       by C(K,2), the number of pairs of K responses, as in InstructGPT eq. 1 — a tied
//                pair adds nothing to the sum but still counts in the normaliser.
//   StrictPairs: by |P_g|, the number of strictly ordered pairs (a group with many ties weighs
//                as much as one without). Equal to Paper when a group has no ties.
enum class PairNormalizer { Paper, StrictPairs };
inline constexpr EnumNames<PairNormalizer, 2> kPairNormalizerNames{
    {{PairNormalizer::Paper, "paper"}, {PairNormalizer::StrictPairs, "strict_pairs"}}};

struct RankedPairs {
  std::vector<int64_t> better, worse;  // [P] response indices in [0, N): rank[better] < rank[worse]
  std::vector<double> weight;          // [P] 1 / (n_g · G')
  int64_t groups = 0;                  // G': groups with >= 1 ordered pair
  int64_t ties = 0;                    // unordered pairs {i, j} of one group with equal ranks
};

RankedPairs ranked_pairs(const std::vector<int64_t>& group_offsets, const std::vector<int32_t>& ranks,
                         PairNormalizer normalizer, const char* caller = "ranked_pairs");

}  // namespace rlhf
