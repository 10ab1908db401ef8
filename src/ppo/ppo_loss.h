// ppo_loss.h — the RL math of PPO-ptx (InstructGPT stage 3) as free functions of (tensors, masks).
//
// Contract:
// - Shapes: per-token tensors are [B, T] (T = full sequence or response window, the caller
//   decides); mask [B, T] is true on response tokens (any dtype; nonzero = true). Scores [B].
// - Masked entries never influence a result: reductions use only masked-in entries, and per-token
//   outputs (rewards) are 0 outside the mask. GAE and whitening: advantages.h.
// - Rollout-time math (kl_penalty, compute_rewards) is called under NoGradGuard by the PPO
//   trainer. policy_loss / value_loss are differentiable w.r.t. logp / values; their diagnostics
//   are detached tensors (no host sync).
#pragma once
#include <cstdint>

#include <torch/torch.h>

#include "common/core/strings.h"

namespace rlhf {

// ppo.kl_estimator: Schulman's k1 = log r, k2 = (log r)^2 / 2, k3 = r - 1 - log r, with
// log r = log pi(a|s) - log pi_ref(a|s) per token (kl_penalty below, kl_loss.h). Default k1 in the
// reward; k2 with ppo.kl_in_loss (whose gradient is the reverse KL's; k1 is refused there).
enum class KlEstimator { K1, K2, K3 };
inline constexpr EnumNames<KlEstimator, 3> kKlEstimatorNames{
    {{KlEstimator::K1, "k1"}, {KlEstimator::K2, "k2"}, {KlEstimator::K3, "k3"}}};

// ppo.loss_aggregation: how per-token policy (and KL / value) losses become one number (verl's
// names; loss_weights below): token_mean over the minibatch's response tokens; seq_mean_token_mean,
// each response's token mean averaged over responses (GRPO, Shao et al. 2024 eq. 3);
// seq_mean_token_sum_norm, each response's token SUM over a constant (ppo.max_new_tokens)
// averaged over responses (Dr. GRPO, Liu et al. 2025). Default token_mean; dr_grpo's is
// seq_mean_token_sum_norm.
enum class LossAggregation { TokenMean, SeqMeanTokenMean, SeqMeanTokenSumNorm };
inline constexpr EnumNames<LossAggregation, 3> kLossAggregationNames{
    {{LossAggregation::TokenMean, "token_mean"}, {LossAggregation::SeqMeanTokenMean, "seq_mean_token_mean"},
     {LossAggregation::SeqMeanTokenSumNorm, "seq_mean_token_sum_norm"}}};

// Per-token KL estimate of KL(π_θ || π_ref) from samples of π_θ (Schulman 2020, "Approximating
// KL divergence"):  k1 = logp - ref_logp;  k2 = (logp - ref_logp)² / 2;  k3 = (ρ - 1) - log ρ
// with ρ = exp(ref_logp - logp). k1 and k3 are unbiased, k2 and k3 non-negative per token. Bounded as verl does: the log-ratio is clamped to
// [-kK3LogRatioClamp, +kK3LogRatioClamp] before exp (exp(30) would dominate a batch), the result
// to [0, kK3Max]. logp, ref_logp [B, T] -> [B, T] (no masking).
constexpr double kK3LogRatioClamp = 20.0;
constexpr double kK3Max = 10.0;
torch::Tensor kl_penalty(const torch::Tensor& logp, const torch::Tensor& ref_logp,
                         KlEstimator estimator);

// Per-token reward (Ziegler et al. 2019; Ouyang et al. 2022 §3.5):
//   r_t = -kl_coef · kl_t  on response tokens (0 elsewhere),  + score_b at row b's last response
//   token. Rows with no response token get all zeros. kl [B, T], score [B], mask [B, T] -> [B, T].
torch::Tensor compute_rewards(const torch::Tensor& kl, const torch::Tensor& score,
                              const torch::Tensor& mask, double kl_coef);

// Σ_{mask} x / max(Σ mask, 1): scalar; 0 for an empty mask (not NaN). Differentiable w.r.t. x.
torch::Tensor masked_mean(const torch::Tensor& x, const torch::Tensor& mask);

// The KL coefficient β of the iterations, fixed or adaptive (ppo.adaptive_kl), chosen at
// construction. Adaptive (Ziegler et al. 2019, "Fine-Tuning Language Models from Human
// Preferences", §2.2):  e = clip(KL/target - 1, -0.2, 0.2);  β ← β · (1 + e · n_steps / horizon).
// Fixed: update() leaves β as it is.
class KlController {
 public:
  KlController(double init_kl_coef, bool adaptive, double target, int64_t horizon);
  void update(double current_kl, int64_t n_steps);
  double value;    // current β (kl_coef); saved in checkpoints
  bool adaptive;
  double target;   // target KL per sequence (nats)
  int64_t horizon;
};

// Per-token loss weights of one micro-batch under ppo.loss_aggregation, so that Σ_{b,t} w·ℓ summed
// over a minibatch's micro-batches (on all ranks) is its aggregated loss:
//   token_mean               w[b, t] = mask / tokens            (tokens: the minibatch's response
//                                                                 tokens, all ranks)
//   seq_mean_token_mean      w[b, t] = mask / (rows · len_b)    (rows: the minibatch's responses,
//                                                                 all ranks; len_b = Σ_t mask[b])
//   seq_mean_token_sum_norm  w[b, t] = mask / (rows · horizon)  (horizon: a constant, the
//                                                                 generation budget)
// A row without response tokens weighs 0 (but counts in rows). mask [b, T] -> [b, T] float32
// (the mask's device). tokens, rows > 0; horizon > 0 for seq_mean_token_sum_norm.
torch::Tensor loss_weights(const torch::Tensor& mask, LossAggregation aggregation, double tokens,
                           double rows, double horizon);

// The loss of per-token terms x [B, T]: Σ_mask w·x with weights (loss_weights), else
// Σ_mask x / normalizer (normalizer > 0) or the masked mean (normalizer <= 0). Differentiable
// w.r.t. x. policy_loss, value_loss and kl_loss reduce through it.
torch::Tensor aggregate(const torch::Tensor& x, const torch::Tensor& mask, double normalizer,
                        const torch::Tensor& weights = {});

// The policy log-ratio log(π_θ/π_old) is clamped to ±kLogRatioClamp before exp (as verl): a
// token whose log-probability moved by more than 20 nats gives a bounded ratio (and no gradient)
// instead of inf/NaN.
constexpr double kLogRatioClamp = 20.0;

struct PolicyLoss {
  torch::Tensor loss;       // scalar, differentiable w.r.t. logp
  torch::Tensor clip_frac;  // scalar (detached): fraction of masked tokens where the clip binds
  torch::Tensor approx_kl;  // scalar (detached): masked mean of ½(logp - old_logp)²
};

// PPO-clip surrogate (Schulman et al. 2017, eq. 7), token-level masked mean:
//   ρ = exp(clamp(logp - old_logp, ±kLogRatioClamp));  L = -mean_mask min(ρ·A, clip(ρ, 1-ε, 1+ε)·A),
//   ε = clip_eps.
// clip_frac counts tokens where the clipped term is strictly smaller than the unclipped one (the
// clipped branch is selected and has zero gradient). approx_kl uses ½(log ρ)², a second-order
// estimate of KL(π_old || π_θ) that is ≥ 0 per token (as in TRL / OpenAI baselines).
// logp, old_logp, advantages, mask [B, T].
// normalizer > 0: every output is Σ_mask(...) / normalizer instead of the mean over this batch's
// mask, so that micro-batches of one minibatch (on one or several ranks), each divided by the
// whole minibatch's token count, add up to the minibatch's token mean (ppo_step.h).
// weights (optional, [B, T], loss_weights): the loss is Σ w · ℓ instead (ppo.loss_aggregation);
// the diagnostics stay token means (normalizer).
PolicyLoss policy_loss(const torch::Tensor& logp, const torch::Tensor& old_logp,
                       const torch::Tensor& advantages, const torch::Tensor& mask,
                       double clip_eps, double normalizer = 0, const torch::Tensor& weights = {});

struct ValueLoss {
  torch::Tensor loss;       // scalar, differentiable w.r.t. values
  torch::Tensor clip_frac;  // scalar (detached): fraction of masked tokens where clipping binds
};

// Clipped value loss (PPO2 baselines; Ouyang et al. 2022 clip the value like the ratio):
//   v_c = old_v + clip(v - old_v, -value_clip, value_clip)
//   L = ½ · mean_mask max((v - R)², (v_c - R)²)
// value_clip ≤ 0 disables clipping (plain ½ MSE, clip_frac 0). values, old_values, returns,
// mask [B, T]. clip_frac counts tokens where the clipped error is strictly larger. normalizer and
// weights as in policy_loss.
ValueLoss value_loss(const torch::Tensor& values, const torch::Tensor& old_values,
                     const torch::Tensor& returns, const torch::Tensor& mask, double value_clip,
                     double normalizer = 0, const torch::Tensor& weights = {});

}  // namespace rlhf
