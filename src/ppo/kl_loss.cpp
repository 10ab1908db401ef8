// kl_loss.cpp — see kl_loss.h.
#include "ppo/kl_loss.h"

#include "common/core/check.h"

namespace rlhf {

torch::Tensor kl_loss(const torch::Tensor& logp, const torch::Tensor& ref_logp, const torch::Tensor& mask,
                      KlEstimator estimator, double kl_coef, double tokens,
                      const torch::Tensor& weights) {
  RLHF_CHECK(tokens > 0, "kl_loss: tokens must be > 0, got {}", tokens);
  RLHF_CHECK(logp.sizes() == ref_logp.sizes() && logp.sizes() == mask.sizes(),
             "kl_loss: logp, ref_logp and mask must have one shape");
  const torch::Tensor k = kl_penalty(logp, ref_logp.detach(), estimator);               // [B, T]
  return kl_coef * aggregate(k, mask, tokens, weights);                               // scalar
}

}  // namespace rlhf
