// advantages.h — critic-free advantage estimators (issue 19): several samples per prompt, the
// sequence score compared within its group, no value model. GAE with a critic (ppo_loss.h)
// stays the default; these are the alternatives that GRPO / RLOO / REINFORCE++ trainers use.
//
// Contract:
// - Groups: scores [B] hold n consecutive samples per prompt (rows g·n .. g·n + n - 1 are prompt
//   g's), B divisible by n, n >= 2. Results are per row [B] (sequence-level advantages); spread
//   them over the response tokens with per_token(). Inputs are not modified and need no grad.
// - Computed in double precision and returned in the scores' dtype.
#pragma once
#include <cstdint>

#include <torch/torch.h>

#include "common/core/strings.h"

namespace rlhf {

// ppo.advantage: GAE with a critic (ppo_loss.h gae), or a critic-free estimator: the group
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
