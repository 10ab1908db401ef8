// sft_loss.cpp — see sft_loss.h for the contract.

#include <fmt/ranges.h>
#include "sft/sft_loss.h"

#include "common/check.h"

namespace rlhf {
namespace {

// Upcast half/bf16 to float32 for the softmax math; float32/float64 are kept.
torch::Tensor softmax_math_dtype(const torch::Tensor& logits) {
  const auto dt = logits.scalar_type();
  if (dt == torch::kHalf || dt == torch::kBFloat16) return logits.to(torch::kFloat);
  return logits;
}

}  // namespace

torch::Tensor token_logprobs(const torch::Tensor& logits, const torch::Tensor& targets) {
  RLHF_CHECK(logits.dim() == 3, "token_logprobs: logits must be [B, T, V], got {} dims",
             logits.dim());
  RLHF_CHECK(targets.dim() == 2 && targets.size(0) == logits.size(0) &&
                 targets.size(1) == logits.size(1),
             "token_logprobs: targets must be [B, T] = [{}, {}], got {}", logits.size(0),
             logits.size(1), fmt::join(targets.sizes().vec(), "x"));
  const torch::Tensor z = softmax_math_dtype(logits);                        // [B, T, V]
  const torch::Tensor lse = z.logsumexp(-1);                                 // [B, T]
  const torch::Tensor picked =
      z.gather(-1, targets.to(torch::kLong).unsqueeze(-1)).squeeze(-1);      // [B, T]
  return picked - lse;                                                       // [B, T]
}

torch::Tensor entropy_from_logits(const torch::Tensor& logits) {
  RLHF_CHECK(logits.dim() == 3, "entropy_from_logits: logits must be [B, T, V], got {} dims",
             logits.dim());
  const torch::Tensor z = softmax_math_dtype(logits);   // [B, T, V]
  const torch::Tensor p = torch::softmax(z, -1);        // [B, T, V]
  return z.logsumexp(-1) - (p * z).sum(-1);             // [B, T]
}

LmLoss masked_lm_loss(const torch::Tensor& logits, const torch::Tensor& tokens,
                      const torch::Tensor& loss_mask) {
  RLHF_CHECK(logits.dim() == 3, "masked_lm_loss: logits must be [B, T, V], got {} dims",
             logits.dim());
  const int64_t B = logits.size(0), T = logits.size(1);
  RLHF_CHECK(tokens.dim() == 2 && tokens.size(0) == B && tokens.size(1) == T,
             "masked_lm_loss: tokens must be [B, T] = [{}, {}], got {}", B, T,
             fmt::join(tokens.sizes().vec(), "x"));
  RLHF_CHECK(loss_mask.sizes() == tokens.sizes(),
             "masked_lm_loss: loss_mask must be [{}, {}] like tokens, got {}", B, T,
             fmt::join(loss_mask.sizes().vec(), "x"));
  RLHF_CHECK(T >= 1, "masked_lm_loss: empty sequence (T = 0)");

  const torch::Tensor mask = loss_mask.slice(1, 1).to(torch::kBool);            // [B, T-1]
  // Masked positions may hold pad ids outside the vocabulary: point them at id 0.
  const torch::Tensor targets =
      torch::where(mask, tokens.slice(1, 1).to(torch::kLong), torch::zeros_like(mask, torch::kLong));
  const torch::Tensor logp = token_logprobs(logits.slice(1, 0, T - 1), targets);  // [B, T-1]
  const torch::Tensor nll = torch::where(mask, -logp, torch::zeros_like(logp));   // [B, T-1]

  LmLoss out;
  out.sum_nll = nll.sum();
  out.tokens = mask.sum().item<int64_t>();
  out.loss = out.sum_nll / static_cast<double>(std::max<int64_t>(out.tokens, 1));
  return out;
}

}  // namespace rlhf
