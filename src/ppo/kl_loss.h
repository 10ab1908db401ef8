// kl_loss.h — the KL to the reference as a loss term instead of a reward penalty (issue 19,
// ppo.kl_in_loss; GRPO, Shao et al. 2024 "DeepSeekMath" eq. 3, which uses k3; k1 / k2 / k3 from
// Schulman 2020, "Approximating KL divergence"):
//
//   L_KL = β · Σ_{masked t} k(logp_t − ref_logp_t) / tokens
//
// with x = logp − ref_logp (log π_θ / π_ref at the sampled token), and per token
//   k1 = x                     d k1 / d logp = 1
//   k2 = x² / 2                d k2 / d logp = x
//   k3 = (e^{−x} − 1) + x      d k3 / d logp = 1 − e^{−x}
// (k3 through kl_penalty: x clamped to ±kK3LogRatioClamp and the value to [0, kK3Max], where the
// gradient is then 0). `tokens` is the minibatch's global response-token count, as policy_loss
// normalises (ppo_step.h), so summing the micro-batches gives the minibatch's token mean.
//
// Contract: logp [B, T] carries the graph (the actor's current log-probs); ref_logp [B, T] is
// constant (detached); mask [B, T] (nonzero = response token). Returns a scalar, differentiable
// w.r.t. logp only. tokens > 0.
#pragma once
#include <torch/torch.h>

#include "ppo/ppo_loss.h"

namespace rlhf {

torch::Tensor kl_loss(const torch::Tensor& logp, const torch::Tensor& ref_logp, const torch::Tensor& mask,
                      KlEstimator estimator, double kl_coef, double tokens);

}  // namespace rlhf
