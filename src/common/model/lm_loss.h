// lm_loss.h — token-level language-model losses shared by SFT, the PPO ptx term and evaluation.
//
// Contract:
// - Free functions of (tensors, masks); no module state. Safe to call from any stage, any rank.
// - logits [B, T, V] of any floating dtype; the softmax math runs in at least float32 (bf16/half
//   logits are upcast), so results are float32 for bf16/half/float logits and float64 for double.
// - Targets/tokens are int64 ids in [0, V). Positions excluded by a mask may hold any id (pad).
// - Autograd flows to the logits; the returned diagnostics that are not tensors are host values
//   (masked_lm_loss syncs once to count tokens).
#pragma once
#include <cstdint>

#include <torch/torch.h>

namespace rlhf {

struct LmLoss {
  torch::Tensor loss;     // scalar: mean NLL over target tokens (0 when there are none, not NaN)
  torch::Tensor sum_nll;  // scalar: sum of NLL over target tokens (for token-weighted averaging)
  int64_t tokens = 0;     // number of target tokens
};

// Shifted next-token cross-entropy (Radford et al. 2018 LM objective, restricted to a mask):
//   loss = -(1/N) Σ_{b, t≥1, mask[b,t]} log softmax(logits[b, t-1])[tokens[b, t]],  N = Σ mask[:,1:]
// logits [B, T, V]; tokens [B, T] int64; loss_mask [B, T] bool, true where tokens[b,t] is a
// target (predicted from position t-1). loss_mask[:, 0] is ignored (nothing predicts token 0).
LmLoss masked_lm_loss(const torch::Tensor& logits, const torch::Tensor& tokens,
                      const torch::Tensor& loss_mask);

// The same loss from the trunk's hidden states and the LM-head weight, without materialising the
// [B, T, V] logits (the "fused linear cross-entropy" of Liger-Kernel, written here from the
// formula): only target rows go through the head, in chunks of `chunk_rows` rows (0 = about
// 2^26 logits per chunk); each chunk's logits z = h Wᵀ live only inside the chunk, and when a
// gradient is needed the chunk's gradients
//   ∂nll/∂z = softmax(z) - onehot(target),  ∂/∂h = (∂nll/∂z) W,  ∂/∂W += (∂nll/∂z)ᵀ h
// are computed right there and scaled by the upstream gradient in backward (sum_nll is linear
// in them). Under CUDA autocast the matmuls run in the autocast dtype as nn.Linear's would, the
// softmax math in float32. hidden [B, T, C] float; weight [V, C]; tokens, loss_mask as for
// masked_lm_loss. Equal to masked_lm_loss(hidden Wᵀ, ...) up to round-off, value and gradients.
LmLoss fused_lm_loss(const torch::Tensor& hidden, const torch::Tensor& weight,
                     const torch::Tensor& tokens, const torch::Tensor& loss_mask,
                     int64_t chunk_rows = 0);

// log π(targets[b,t] | ·) = logits[b,t,targets[b,t]] - logsumexp_v logits[b,t,v]   -> [B, T]
// No shift: position t's logits score targets[b,t]. Float32 (or wider) math.
torch::Tensor token_logprobs(const torch::Tensor& logits, const torch::Tensor& targets);

// Entropy of the softmax at each position: H = logsumexp(z) - Σ_v softmax(z)_v z_v   -> [B, T]
torch::Tensor entropy_from_logits(const torch::Tensor& logits);

}  // namespace rlhf
