// advantages.h — every advantage estimator of ppo.advantage and the whitening they share: GAE
// with a critic (the default), and the critic-free ones (issue 19) — several samples per prompt,
// the sequence score compared within its group (GRPO / Dr. GRPO / RLOO), or REINFORCE++'s
// returns — that need no value model.
//
// Contract:
// - Per-token tensors are [B, T] with a mask [B, T] (any dtype; nonzero = true); outputs are 0
//   outside the mask. gae() detaches its inputs; the whitening statistics are local
//   (masked_stats): the caller all-reduces {sum, sum_sq, count} and calls masked_whiten_with()
//   with the global mean / variance, so every rank whitens identically.
// - Groups: scores [B] hold n consecutive samples per prompt (rows g·n .. g·n + n - 1 are prompt
//   g's), B divisible by n, n >= 2. Results are per row [B] (sequence-level advantages); spread
//   them over the response tokens with per_token(). Inputs are not modified and need no grad.
// - Computed in double precision and returned in the scores' dtype.
#pragma once
#include <cstdint>

#include <torch/torch.h>

#include "common/core/strings.h"

namespace rlhf {

// ppo.advantage: GAE with a critic (gae below), or a critic-free estimator: the group
// estimators below, or REINFORCE++ (reinforce_pp_returns).
enum class AdvantageKind {
  Gae,
  // GRPO (Shao et al. 2024, "DeepSeekMath", §4.1.2, outcome supervision):
  //   Â_i = (r_i - mean_g r) / (std_g r + eps),  std with Bessel's correction (n - 1), as TRL
  //   and verl compute it; a group whose rewards are all equal gets 0 (not 0/eps noise). eps =
  //   1e-6 as verl (TRL: 1e-4): the two differ only for groups whose rewards nearly tie (std ~
  //   1e-4), where ours gives the larger advantages.
  Grpo,
  // Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training", §3.1): Â_i = r_i - mean_g r
  //   (no division by the std, which up-weights too easy or too hard prompts; the paper also
  //   drops the per-sequence length normalisation, which is the loss's business).
  DrGrpo,
  // RLOO (Ahmadian et al. 2024, "Back to Basics", §3; Kool et al. 2019): each sample's baseline
  //   is the mean of the OTHER n - 1:  Â_i = r_i - (Σ_g r - r_i)/(n - 1) = n/(n - 1)·(r_i - mean_g r).
  Rloo,
  ReinforcePp,
};
inline constexpr EnumNames<AdvantageKind, 5> kAdvantageNames{
    {{AdvantageKind::Gae, "gae"}, {AdvantageKind::Grpo, "grpo"}, {AdvantageKind::DrGrpo, "dr_grpo"},
     {AdvantageKind::Rloo, "rloo"}, {AdvantageKind::ReinforcePp, "reinforce_pp"}}};

// Whether ppo.advantage trains a critic (only gae does).
inline bool uses_critic(AdvantageKind k) { return k == AdvantageKind::Gae; }
// Whether it compares the samples of one prompt (grpo, dr_grpo, rloo: n >= 2 per prompt).
inline bool is_group_estimator(AdvantageKind k) {
  return k == AdvantageKind::Grpo || k == AdvantageKind::DrGrpo || k == AdvantageKind::Rloo;
}

struct GaeResult {
  torch::Tensor advantages;  // [B, T], 0 outside the mask
  torch::Tensor returns;     // [B, T] = advantages + values on the mask, 0 outside
};

// Generalized Advantage Estimation (Schulman et al. 2016, eq. 16), masked:
//   δ_t = r_t + γ·V_{t'} - V_t,  A_t = δ_t + γλ·A_{t'}
// where t' is the next masked-in position of the row (masked-out positions are skipped, so the
// prompt head and pad tail take no part); after the last response token V = 0 and A = 0
// (episode ends with the row, no bootstrapping). returns = A + V (the λ-return, the value target).
// values, rewards, mask [B, T]; inputs are detached.
GaeResult gae(const torch::Tensor& values, const torch::Tensor& rewards, const torch::Tensor& mask,
              double gamma, double gae_lambda);

// Local sufficient statistics over masked-in entries of x, in double precision. All-reduce
// (sum) each field across ranks to get the global batch statistics.
struct MaskedStats {
  double sum = 0.0;
  double sum_sq = 0.0;
  double count = 0.0;
  double mean() const;  // sum / count; 0 when count = 0
  // Unbiased (Bessel-corrected) variance: (sum_sq/count - mean²) · count/(count-1), the usual
  // choice in PPO implementations; 0 when count < 2 (and never negative from rounding).
  double var() const;
};
MaskedStats masked_stats(const torch::Tensor& x, const torch::Tensor& mask);

// Whitening with given statistics: (x - mean) / sqrt(var + 1e-8), plus mean again when
// shift_mean is false (rescale only). Entries outside the mask are set to 0.
torch::Tensor masked_whiten_with(const torch::Tensor& x, const torch::Tensor& mask, double mean,
                                 double var, bool shift_mean = true);
// Same with statistics of this x alone (local batch): masked_stats(x, mask) then _with.
torch::Tensor masked_whiten(const torch::Tensor& x, const torch::Tensor& mask,
                            bool shift_mean = true);

// Sequence-level advantages of each row within its group of n. scores [B] -> [B]. estimator: a
// group estimator (throws for gae and reinforce_pp).
torch::Tensor group_advantages(const torch::Tensor& scores, int64_t n, AdvantageKind estimator,
                               double eps = 1e-6);

// REINFORCE++ (Hu 2025, "REINFORCE++: a simple and efficient approach for aligning LLMs", §3):
// the token-level return with γ = 1 over the response, G_t = Σ_{s ≥ t, masked} r_s, where the
// per-token rewards r already carry the KL penalty and the score at the last token
// (compute_rewards in ppo_loss.h). The caller whitens G over the whole (global) batch with
// masked_stats / masked_whiten_with; no critic, no group. rewards, mask [B, T] -> [B, T], 0
// outside the mask.
torch::Tensor reinforce_pp_returns(const torch::Tensor& rewards, const torch::Tensor& mask);

// A sequence-level advantage [B] on every response token: adv[b] · mask[b, t] -> [B, T].
torch::Tensor per_token(const torch::Tensor& advantages, const torch::Tensor& mask);

}  // namespace rlhf
