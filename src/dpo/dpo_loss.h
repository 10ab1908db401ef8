// dpo_loss.h — Direct Preference Optimisation over ranked groups of K responses per prompt.
//
// Contract:
// - policy_logp [N], reference_logp [N]: the sequence log-probability of each response under the
//   trained policy and the frozen reference: log π(y|x) = Σ_{t ∈ response tokens (+ EOS)}
//   log π(y_t | x, y_<t), a SUM over the response's target tokens (sequence_logprobs in
//   dpo/preference_batch.h), all prompts' responses concatenated in group order. Same float dtype,
//   same device. The loss is differentiable w.r.t. policy_logp only (reference_logp is detached).
// - group_offsets (size G+1) and ranks (size N, 0 = best) as in common/data/ranked_pairs.h: the
//   pairs of group g are all (w, l) of its responses with rank_w < rank_l (ranked_pairs, shared
//   with the RM loss); tied pairs form no pair and are counted in `ties`.
// - The counters and sums are host values (one host sync per call).
//
// Per pair p = (w, l) (Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model
// is Secretly a Reward Model", eq. 7):
//   implicit reward     r(y) = β · (log π(y|x) − log π_ref(y|x))
//   h_p = r(w) − r(l) = β · [(log π(w) − log π_ref(w)) − (log π(l) − log π_ref(l))]
//   sigmoid:  ℓ_p = −(1−ε) · log σ(h_p) − ε · log σ(−h_p)
//             (ε = dpo.label_smoothing: "conservative DPO", Mitchell 2023, "A note on DPO with
//             noisy preferences": the preference label is assumed flipped with probability ε;
//             ε = 0 is the paper's loss; dℓ/dh = −(1−ε)σ(−h) + εσ(h))
//   ipo:      ℓ_p = (h_p/β − 1/(2β))²
//             (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human
//             Preferences", the IPO loss with τ = β: h/β is the log-likelihood-ratio difference
//             log[π(w)π_ref(l) / (π(l)π_ref(w))] regressed onto 1/(2β); dℓ/dh = 2(h/β − 1/(2β))/β.)
//             Normalisation (dpo.ipo_average): true (the default) uses per-token MEAN log-ratios,
//             (log π(y) − log π_ref(y)) / |y| with |y| = the response's target tokens (`lengths`),
//             as TRL's DPOTrainer does for IPO and as the IPO authors' reported runs did, so a
//             published IPO β means the same here; false uses the sequence SUMS as sigmoid does
//             (then 1/(2β) is a margin in whole-sequence nats, and a β tuned for means must
//             shrink with the response length). ε is ignored.
// Group weighting as the RM's K-wise loss (rm.pair_normalizer): per group g with ordered pairs P_g,
//   L_g = (1/n_g) Σ_{p ∈ P_g} ℓ_p,  n_g = C(K_g, 2) (paper) or |P_g| (strict_pairs);
//   loss = mean of L_g over the groups with |P_g| ≥ 1 (0, still attached, when there is none).
// K = 2 with distinct ranks is the paper's pairwise loss.
#pragma once
#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "common/core/strings.h"
#include "common/data/ranked_pairs.h"  // PairNormalizer, ranked_pairs

namespace rlhf {

// dpo.loss: sigmoid (Rafailov et al. 2023, with optional label smoothing) or ipo (Azar et al. 2023).
enum class DpoLossKind { Sigmoid, Ipo };
inline constexpr EnumNames<DpoLossKind, 2> kDpoLossNames{{{DpoLossKind::Sigmoid, "sigmoid"}, {DpoLossKind::Ipo, "ipo"}}};

struct DpoOptions {
  double beta = 0.1;
  DpoLossKind loss = DpoLossKind::Sigmoid;
  double label_smoothing = 0.0;  // ε, sigmoid only
  PairNormalizer normalizer = PairNormalizer::Paper;
  bool ipo_average = true;       // ipo only: log-ratios divided by the responses' lengths
};

struct DpoLoss {
  torch::Tensor loss;        // scalar
  int64_t pairs = 0;         // ordered pairs over all groups
  int64_t ties = 0;          // tied pairs skipped
  int64_t groups = 0;        // groups with >= 1 pair
  int64_t correct = 0;       // pairs with h > 0 (strictly)
  // Sums over pairs (divide by `pairs` for means; a response is counted once per pair it is in):
  double margin_sum = 0;     // Σ h_p = Σ (r(w) − r(l))
  double chosen_reward_sum = 0, rejected_reward_sum = 0;  // Σ r(w), Σ r(l)
  double chosen_logp_sum = 0, rejected_logp_sum = 0;      // Σ log π(w), Σ log π(l)
};

// lengths [N] (the responses' target-token counts, > 0): required for ipo with ipo_average, which
// divides each log-ratio by it (the implicit rewards and margins reported are then per token too);
// ignored otherwise.
DpoLoss dpo_loss(const torch::Tensor& policy_logp, const torch::Tensor& reference_logp,
                 const std::vector<int64_t>& group_offsets, const std::vector<int32_t>& ranks,
                 const DpoOptions& opt, const torch::Tensor& lengths = {});

}  // namespace rlhf
