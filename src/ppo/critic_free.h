// critic_free.h — PPO's experience without a critic (issue 19): the advantage estimators of
// advantages.h wired to a rollout. ppo.advantage selects them; gae keeps the critic (ppo_step.h).
//
//   grpo / dr_grpo / rloo  one sequence reward per response,
//                            R_i = score_i − β · Σ_t KL_t        (KL in the reward, as in ppo_loss.h)
//                          compared within its group of n = ppo.samples_per_prompt responses to one
//                          prompt (advantages.h: GRPO, Shao et al. 2024 §4.1.2; Dr. GRPO, Liu et al.
//                          2025 §3.1; RLOO, Ahmadian et al. 2024 §3), broadcast over the response
//                          tokens: A[b, t] = Â_b · mask[b, t]. Not whitened further.
//   reinforce_pp           per-token rewards r_t (−β·KL_t, + score at the last token: compute_rewards),
//                          G_t = Σ_{s ≥ t} r_s (γ = 1; Hu 2025 §3), whitened over the GLOBAL batch.
//
// Contract:
// - ro holds score [B], kl [B, N], rewards [B, N] (0 off the response mask) and, for the group
//   estimators, n consecutive rows per prompt, all on this rank (ppo_trainer repeats each prompt
//   row n times). Fills ro.advantages and ro.returns [B, N] (returns: G for reinforce_pp, R_i on
//   every response token for the group estimators; nothing trains on them) and ro.old_values = 0.
// - Collective for reinforce_pp (one all-reduce of the whitening statistics); local otherwise.
// - Runs without gradients.
#pragma once
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "common/dist/dist.h"
#include "common/train/config.h"
#include "ppo/advantages.h"
#include "ppo/rollout.h"

namespace rlhf {

// Whether ppo.advantage trains a critic (only gae does).
inline bool uses_critic(AdvantageKind k) { return k == AdvantageKind::Gae; }

// Checks ppo.advantage against ppo.samples_per_prompt: the group estimators need n >= 2. Throws
// naming the keys.
void check_advantage_config(const PpoSection& pc);

// Sequence rewards R = score − kl_coef · Σ_t kl[:, t]. score [B], kl [B, N] (0 off the mask) -> [B].
torch::Tensor sequence_rewards(const torch::Tensor& score, const torch::Tensor& kl, double kl_coef);

// Each entry of idx n times in a row (the prompt rows of a group): {a, b}, 2 -> {a, a, b, b}.
std::vector<int64_t> repeat_each(const std::vector<int64_t>& idx, int64_t n);

// Fills ro.advantages / ro.returns / ro.old_values as above. kind != Gae; group = n.
void critic_free_advantages(Rollout& ro, AdvantageKind kind, int64_t group, double kl_coef,
                            Communicator& comm);

// The iteration's advantage metrics (global over ranks; collective): adv_mean and adv_abs_mean, the
// token means of A and |A| over all response tokens (adv_mean = 0 for reinforce_pp, which whitens;
// for the group estimators it is length-weighted and need not be 0), adv_abs_max; for the group
// estimators adv_seq_mean, the mean of the sequence advantages Â_b over rows (0 up to round-off:
// every group is centred), and groups_tied, the fraction of groups whose sequence rewards are all
// equal (their advantages are 0: no signal).
nlohmann::json critic_free_metrics(const Rollout& ro, AdvantageKind kind, int64_t group, Communicator& comm);

}  // namespace rlhf
