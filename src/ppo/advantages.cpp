// advantages.cpp — see advantages.h.
#include "ppo/advantages.h"

#include "common/core/check.h"
#include "common/core/strings.h"

namespace rlhf {

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
