// ppo_loss.cpp — see ppo_loss.h for the contract and the formulas.
#include "ppo/ppo_loss.h"

#include <fmt/ranges.h>
#include <algorithm>
#include <cmath>
#include <string>

#include "common/core/check.h"
#include "common/core/strings.h"
#include "ppo/tensor_checks.h"

namespace rlhf {

torch::Tensor kl_penalty(const torch::Tensor& logp, const torch::Tensor& ref_logp,
                         KlEstimator estimator) {
  check_same_shape("kl_penalty", "ref_logp", ref_logp, logp);
  switch (estimator) {
    case KlEstimator::K1:
      return logp - ref_logp;                              // [B, T]
    case KlEstimator::K2:
      return 0.5 * (logp - ref_logp).pow(2);               // [B, T] ≥ 0
    case KlEstimator::K3: {
      const torch::Tensor log_ratio =
          (ref_logp - logp).clamp(-kK3LogRatioClamp, kK3LogRatioClamp);  // [B, T] log(p_ref / p)
      return ((log_ratio.exp() - 1.0) - log_ratio).clamp(0.0, kK3Max);   // [B, T] ≥ 0
    }
  }
  RLHF_CHECK(false, "kl_penalty: unknown KlEstimator {}", static_cast<int>(estimator));
  return {};
}

torch::Tensor compute_rewards(const torch::Tensor& kl, const torch::Tensor& score,
                              const torch::Tensor& mask, double kl_coef) {
  RLHF_CHECK(kl.dim() == 2, "compute_rewards: kl must be [B, T], got {}", shape_str(kl));
  check_same_shape("compute_rewards", "mask", mask, kl);
  RLHF_CHECK(score.dim() == 1 && score.size(0) == kl.size(0),
             "compute_rewards: score must be [B] = [{}], got {}", kl.size(0), shape_str(score));
  const torch::Tensor m = as_bool(mask);                                        // [B, T]
  torch::Tensor rewards = torch::where(m, -kl_coef * kl, torch::zeros_like(kl));  // [B, T]

  // Last response token per row: max over t of (t + 1)·mask, minus 1 (-1 for an empty row).
  const int64_t T = kl.size(1);
  const torch::Tensor pos =
      torch::arange(1, T + 1, torch::TensorOptions().dtype(torch::kLong).device(kl.device()));
  const torch::Tensor last_plus1 = (pos.unsqueeze(0) * m.to(torch::kLong)).amax(1);  // [B]
  const torch::Tensor has_response = last_plus1 > 0;                               // [B]
  const torch::Tensor last = (last_plus1 - 1).clamp_min(0);                        // [B]
  const torch::Tensor s = torch::where(has_response, score.to(kl.scalar_type()),
                                       torch::zeros_like(score, kl.options()));    // [B]
  return rewards.scatter_add(1, last.unsqueeze(1), s.unsqueeze(1));                // [B, T]
}

torch::Tensor masked_mean(const torch::Tensor& x, const torch::Tensor& mask) {
  check_same_shape("masked_mean", "mask", mask, x);
  const torch::Tensor m = as_bool(mask);
  const torch::Tensor total = torch::where(m, x, torch::zeros_like(x)).sum();
  return total / m.sum().clamp_min(1).to(total.scalar_type());
}

namespace {
// Σ_mask x / normalizer when normalizer > 0, else masked_mean(x, mask).
torch::Tensor masked_reduce(const torch::Tensor& x, const torch::Tensor& mask, double normalizer) {
  if (normalizer <= 0) return masked_mean(x, mask);
  return torch::where(as_bool(mask), x, torch::zeros_like(x)).sum() / normalizer;
}
}  // namespace

torch::Tensor aggregate(const torch::Tensor& x, const torch::Tensor& mask, double normalizer,
                        const torch::Tensor& weights) {
  if (!weights.defined()) return masked_reduce(x, mask, normalizer);
  check_same_shape("aggregate", "weights", weights, x);
  return torch::where(as_bool(mask), x * weights.to(x.scalar_type()), torch::zeros_like(x)).sum();
}

torch::Tensor loss_weights(const torch::Tensor& mask, LossAggregation aggregation, double tokens,
                           double rows, double horizon) {
  RLHF_CHECK(mask.dim() == 2, "loss_weights: mask must be [B, T], got {}", shape_str(mask));
  RLHF_CHECK(tokens > 0 && rows > 0, "loss_weights: tokens ({}) and rows ({}) must be > 0", tokens, rows);
  const torch::Tensor m = as_bool(mask).to(torch::kFloat);                  // [B, T]
  switch (aggregation) {
    case LossAggregation::TokenMean: return m / tokens;
    case LossAggregation::SeqMeanTokenMean:
      return m / (m.sum(1, /*keepdim=*/true).clamp_min(1.0) * rows);         // [B, T]
    case LossAggregation::SeqMeanTokenSumNorm:
      RLHF_CHECK(horizon > 0, "loss_weights: seq_mean_token_sum_norm needs a horizon > 0, got {}", horizon);
      return m / (rows * horizon);
  }
  RLHF_CHECK(false, "loss_weights: unknown LossAggregation {}", static_cast<int>(aggregation));
  return {};
}

KlController::KlController(double init_kl_coef, bool adaptive_kl, double target_kl, int64_t horizon_steps)
    : value(init_kl_coef), adaptive(adaptive_kl), target(target_kl), horizon(horizon_steps) {
  RLHF_CHECK(init_kl_coef >= 0.0, "KlController: kl_coef must be >= 0, got {}", init_kl_coef);
  RLHF_CHECK(target_kl > 0.0, "KlController: target must be > 0, got {}", target_kl);
  RLHF_CHECK(horizon_steps > 0, "KlController: horizon must be > 0, got {}", horizon_steps);
}

void KlController::update(double current_kl, int64_t n_steps) {
  if (!adaptive) return;
  const double proportional_error = std::clamp(current_kl / target - 1.0, -0.2, 0.2);
  const double mult = 1.0 + proportional_error * static_cast<double>(n_steps) /
                                static_cast<double>(horizon);
  value *= mult;
}

PolicyLoss policy_loss(const torch::Tensor& logp, const torch::Tensor& old_logp,
                       const torch::Tensor& advantages, const torch::Tensor& mask,
                       double clip_eps, double normalizer, const torch::Tensor& weights) {
  check_same_shape("policy_loss", "old_logp", old_logp, logp);
  check_same_shape("policy_loss", "advantages", advantages, logp);
  check_same_shape("policy_loss", "mask", mask, logp);
  RLHF_CHECK(clip_eps > 0.0, "policy_loss: clip_eps must be > 0, got {}", clip_eps);
  const torch::Tensor log_ratio =
      (logp - old_logp.detach()).clamp(-kLogRatioClamp, kLogRatioClamp);              // [B, T]
  const torch::Tensor ratio = log_ratio.exp();                                        // [B, T]
  const torch::Tensor adv = advantages.detach();                                      // [B, T]
  const torch::Tensor surr1 = ratio * adv;                                            // [B, T]
  const torch::Tensor surr2 = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv;      // [B, T]
  PolicyLoss out;
  out.loss = aggregate(-torch::min(surr1, surr2), mask, normalizer, weights);
  torch::NoGradGuard no_grad;
  out.clip_frac = masked_reduce((surr2 < surr1).to(logp.scalar_type()), mask, normalizer);
  const torch::Tensor lr = log_ratio.detach();
  out.approx_kl = masked_reduce(0.5 * lr * lr, mask, normalizer);
  return out;
}

ValueLoss value_loss(const torch::Tensor& values, const torch::Tensor& old_values,
                     const torch::Tensor& returns, const torch::Tensor& mask, double value_clip,
                     double normalizer, const torch::Tensor& weights) {
  check_same_shape("value_loss", "old_values", old_values, values);
  check_same_shape("value_loss", "returns", returns, values);
  check_same_shape("value_loss", "mask", mask, values);
  const torch::Tensor R = returns.detach();
  const torch::Tensor err = (values - R).pow(2);                                    // [B, T]
  ValueLoss out;
  if (value_clip <= 0.0) {
    out.loss = 0.5 * aggregate(err, mask, normalizer, weights);
    out.clip_frac = torch::zeros({}, values.options().requires_grad(false));
    return out;
  }
  const torch::Tensor old_v = old_values.detach();
  const torch::Tensor v_clipped = old_v + (values - old_v).clamp(-value_clip, value_clip);
  const torch::Tensor err_clipped = (v_clipped - R).pow(2);                         // [B, T]
  out.loss = 0.5 * aggregate(torch::max(err, err_clipped), mask, normalizer, weights);
  torch::NoGradGuard no_grad;
  out.clip_frac = masked_reduce((err_clipped > err).to(values.scalar_type()), mask, normalizer);
  return out;
}

}  // namespace rlhf
