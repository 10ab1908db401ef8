// advantages.cpp — see advantages.h.
#include "ppo/advantages.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/core/check.h"
#include "common/core/strings.h"
#include "ppo/tensor_checks.h"

namespace rlhf {

GaeResult gae(const torch::Tensor& values, const torch::Tensor& rewards, const torch::Tensor& mask,
              double gamma, double gae_lambda) {
  RLHF_CHECK(values.dim() == 2, "gae: values must be [B, T], got {}", shape_str(values));
  check_same_shape("gae", "rewards", rewards, values);
  check_same_shape("gae", "mask", mask, values);
  const torch::Tensor v = values.detach();                                  // [B, T]
  const torch::Tensor r = rewards.detach().to(v.scalar_type());             // [B, T]
  const torch::Tensor m = as_bool(mask);                                    // [B, T]
  const int64_t B = v.size(0), T = v.size(1);

  torch::Tensor next_value = torch::zeros({B}, v.options());  // V after the row's end = 0
  torch::Tensor last_adv = torch::zeros({B}, v.options());
  const torch::Tensor zero = torch::zeros({B}, v.options());
  std::vector<torch::Tensor> adv_cols(static_cast<size_t>(T));
  for (int64_t t = T - 1; t >= 0; --t) {
    const torch::Tensor m_t = m.select(1, t);                       // [B]
    const torch::Tensor v_t = v.select(1, t);                       // [B]
    const torch::Tensor delta = r.select(1, t) + gamma * next_value - v_t;  // [B]
    const torch::Tensor a_t = delta + (gamma * gae_lambda) * last_adv;      // [B]
    // Masked-out positions are skipped: the recursion state passes through unchanged.
    last_adv = torch::where(m_t, a_t, last_adv);
    next_value = torch::where(m_t, v_t, next_value);
    adv_cols[static_cast<size_t>(t)] = torch::where(m_t, a_t, zero);
  }
  GaeResult out;
  out.advantages = torch::stack(adv_cols, 1);                                     // [B, T]
  out.returns = torch::where(m, out.advantages + v, torch::zeros_like(v));         // [B, T]
  return out;
}

double MaskedStats::mean() const { return count > 0 ? sum / count : 0.0; }

double MaskedStats::var() const {
  if (count < 2) return 0.0;
  const double mu = mean();
  const double biased = std::max(sum_sq / count - mu * mu, 0.0);
  return biased * count / (count - 1.0);
}

MaskedStats masked_stats(const torch::Tensor& x, const torch::Tensor& mask) {
  check_same_shape("masked_stats", "mask", mask, x);
  torch::NoGradGuard no_grad;
  const torch::Tensor m = as_bool(mask);
  const torch::Tensor xd = torch::where(m, x.detach().to(torch::kDouble),
                                        torch::zeros_like(x, torch::kDouble));
  const torch::Tensor s =
      torch::stack({xd.sum(), (xd * xd).sum(), m.sum().to(torch::kDouble)}).cpu();  // [3]
  const double* p = s.data_ptr<double>();
  return MaskedStats{p[0], p[1], p[2]};
}

torch::Tensor masked_whiten_with(const torch::Tensor& x, const torch::Tensor& mask, double mean,
                                 double var, bool shift_mean) {
  check_same_shape("masked_whiten_with", "mask", mask, x);
  RLHF_CHECK(var >= 0.0 && std::isfinite(var) && std::isfinite(mean),
             "masked_whiten_with: need finite mean and var >= 0, got mean {} var {}", mean, var);
  torch::Tensor w = (x - mean) * (1.0 / std::sqrt(var + 1e-8));
  if (!shift_mean) w = w + mean;
  return torch::where(as_bool(mask), w, torch::zeros_like(w));
}

torch::Tensor masked_whiten(const torch::Tensor& x, const torch::Tensor& mask, bool shift_mean) {
  const MaskedStats st = masked_stats(x, mask);
  return masked_whiten_with(x, mask, st.mean(), st.var(), shift_mean);
}


torch::Tensor group_advantages(const torch::Tensor& scores, int64_t n, AdvantageKind estimator,
                               double eps) {
  RLHF_CHECK(scores.dim() == 1, "group_advantages: scores must be [B], got {}", shape_str(scores));
  RLHF_CHECK(is_group_estimator(estimator), "group_advantages: ppo.advantage '{}' is not a group estimator",
             kAdvantageNames.name(estimator));
  RLHF_CHECK(n >= 2, "group_advantages: a group needs at least 2 samples per prompt, got {}", n);
  RLHF_CHECK(scores.size(0) % n == 0, "group_advantages: {} scores are not groups of {}",
             scores.size(0), n);
  const torch::Tensor r = scores.detach().to(torch::kDouble).view({-1, n});  // [G, n]
  const torch::Tensor mean = r.mean(1, /*keepdim=*/true);                     // [G, 1]
  torch::Tensor adv;                                                           // [G, n]
  switch (estimator) {
    case AdvantageKind::Grpo: {
      const torch::Tensor centred = r - mean;
      const torch::Tensor std = r.std(1, /*unbiased=*/true, /*keepdim=*/true);  // [G, 1]
      adv = centred / (std + eps);
      break;
    }
    case AdvantageKind::DrGrpo: adv = r - mean; break;
    case AdvantageKind::Rloo: adv = (r - mean) * (static_cast<double>(n) / (n - 1)); break;
    default: break;  // refused above
  }
  return adv.reshape({-1}).to(scores.scalar_type());
}

torch::Tensor reinforce_pp_returns(const torch::Tensor& rewards, const torch::Tensor& mask) {
  RLHF_CHECK(rewards.dim() == 2, "reinforce_pp_returns: rewards must be [B, T], got {}",
             shape_str(rewards));
  RLHF_CHECK(mask.sizes() == rewards.sizes(), "reinforce_pp_returns: mask {} differs from rewards {}",
             shape_str(mask), shape_str(rewards));
  const torch::Tensor m = mask.to(torch::kBool);
  const torch::Tensor r = torch::where(m, rewards.detach().to(torch::kDouble),
                                       torch::zeros_like(rewards, torch::kDouble));  // [B, T]
  // Suffix sums along T: flip, cumulative sum, flip back; then 0 outside the mask.
  const torch::Tensor g = r.flip({1}).cumsum(1).flip({1});
  return torch::where(m, g, torch::zeros_like(g)).to(rewards.scalar_type());
}

torch::Tensor per_token(const torch::Tensor& advantages, const torch::Tensor& mask) {
  RLHF_CHECK(advantages.dim() == 1 && mask.dim() == 2 && advantages.size(0) == mask.size(0),
             "per_token: advantages [B] and mask [B, T] expected, got {} and {}",
             shape_str(advantages), shape_str(mask));
  return advantages.unsqueeze(1) * mask.to(advantages.scalar_type());
}

}  // namespace rlhf
