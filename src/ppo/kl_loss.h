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
// gradient is then 0: for log(π_ref/π) > ≈ 2.6). `tokens` is the minibatch's global response-token
// count, as policy_loss normalises (ppo_step.h), so summing the micro-batches gives the
// minibatch's token mean; with `weights` (loss_weights, ppo.loss_aggregation) the term is
// β · Σ w · k instead.
//
// What each estimator's gradient optimises, in expectation over the sampled tokens a ~ π (the
// samples are data: the gradient does not flow through the sampling; tests/stages/test_kl_loss
// checks these by exact enumeration over a small softmax):
//   k1: E_π[∇ log π(a)] = Σ_a ∇π(a) = 0 — pure noise, which is why parse_config refuses k1 with
//       ppo.kl_in_loss;
//   k2: E_π[x ∇ log π(a)] = Σ_a ∇π(a) · log(π/π_ref)(a) = ∇ KL(π ‖ π_ref) — the reverse KL's
//       gradient exactly: the default with ppo.kl_in_loss;
//   k3: E_π[(1 − π_ref/π) ∇ log π(a)] = −Σ_a π_ref(a) ∇ log π(a) = ∇ KL(π_ref ‖ π) — the FORWARD
//       KL's gradient (mass-covering), though k3's value estimates the reverse KL without bias;
//       accepted with a warning (GRPO's paper uses it).
//
// Contract: logp [B, T] carries the graph (the actor's current log-probs); ref_logp [B, T] is
// constant (detached); mask [B, T] (nonzero = response token). Returns a scalar, differentiable
// w.r.t. logp only. tokens > 0.
#pragma once
#include <torch/torch.h>

#include "ppo/ppo_loss.h"

namespace rlhf {

torch::Tensor kl_loss(const torch::Tensor& logp, const torch::Tensor& ref_logp, const torch::Tensor& mask,
                      KlEstimator estimator, double kl_coef, double tokens,
                      const torch::Tensor& weights = {});

}  // namespace rlhf
