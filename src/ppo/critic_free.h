// critic_free.h — PPO's experience without a critic (issue 19): the advantage estimators of
// advantages.h wired to a rollout. ppo.advantage selects them; gae keeps the critic (ppo_step.h).
//
//   grpo / dr_grpo / rloo  the SCORE of each response compared within its group of
//                          n = ppo.samples_per_prompt responses to one prompt (advantages.h: GRPO,
//                          Shao et al. 2024 §4.1.2; Dr. GRPO, Liu et al. 2025 §3.1; RLOO, Ahmadian
//                          et al. 2024 §3), Â_b = group_advantages(score)_b, then the KL penalty
//                          per token as OpenRLHF applies it, not normalised:
//                            A[b, t] = Â_b − β · Σ_{s ≥ t} KL[b, s]    (response tokens; γ = 1)
//                          With ppo.kl_in_loss (β = 0 here, the KL is a loss term: kl_loss.h)
//                          A[b, t] = Â_b. A group whose scores tie gets Â = 0 whatever its KL
//                          (summing β·KL into the reward before normalising would make KL noise
//                          a unit-variance advantage, and scale β by 1/std(score) elsewhere).
//   reinforce_pp           per-token rewards r_t (−β·KL_t, + score at the last token: compute_rewards),
//                          G_t = Σ_{s ≥ t} r_s (γ = 1; Hu 2025 §3), whitened over the GLOBAL batch.
//
// Contract:
// - ro holds score [B], kl [B, N], rewards [B, N] (0 off the response mask) and, for the group
//   estimators, n consecutive rows per prompt, all on this rank (ppo_trainer repeats each prompt
//   row n times). Fills ro.advantages and ro.returns [B, N] (returns: the return-to-go of the
//   shaped rewards, G_t = score − β·Σ_{s ≥ t} KL_s, for every estimator; nothing trains on them)
//   and ro.old_values = 0.
// - Collective for reinforce_pp (one all-reduce of the whitening statistics); local otherwise.
// - Runs without gradients.
#pragma once
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "common/dist/dist.h"
#include "ppo/advantages.h"
#include "ppo/rollout.h"

namespace rlhf {

// Each entry of idx n times in a row (the prompt rows of a group): {a, b}, 2 -> {a, a, b, b}.
std::vector<int64_t> repeat_each(const std::vector<int64_t>& idx, int64_t n);

// Fills ro.advantages / ro.returns / ro.old_values as above. kind != Gae; group = n.
void critic_free_advantages(Rollout& ro, AdvantageKind kind, int64_t group, double kl_coef,
                            Communicator& comm);

// The iteration's advantage metrics (global over ranks; collective): adv_mean and adv_abs_mean, the
// token means of A and |A| over all response tokens (adv_mean = 0 for reinforce_pp, which whitens;
// for the group estimators it is length-weighted and need not be 0), adv_abs_max; for the group
// estimators adv_seq_mean, the mean over rows of each response's token-mean advantage (the group
// part is centred, so this is the KL part's pull, ≤ 0; 0 with ppo.kl_in_loss), and groups_tied,
// the fraction of groups whose scores are all equal (their group advantages are 0: no signal).
nlohmann::json critic_free_metrics(const Rollout& ro, AdvantageKind kind, int64_t group, Communicator& comm);

}  // namespace rlhf
