// lm_loss.cpp — see lm_loss.h for the contract.

#include <fmt/ranges.h>
#include "common/model/lm_loss.h"

#include <torch/csrc/autograd/custom_function.h>

#include "common/core/check.h"
#include "common/core/strings.h"
#include "common/core/compat.h"

namespace rlhf {
namespace {

// Upcast half/bf16 to float32 for the softmax math; float32/float64 are kept.
torch::Tensor softmax_math_dtype(const torch::Tensor& logits) {
  const auto dt = logits.scalar_type();
  if (dt == torch::kHalf || dt == torch::kBFloat16) return logits.to(torch::kFloat);
  return logits;
}

// tokens [B, T] ids and loss_mask of the same shape, T >= 1; `fn` names the caller.
void check_targets(const char* fn, int64_t B, int64_t T, const torch::Tensor& tokens,
                   const torch::Tensor& loss_mask) {
  RLHF_CHECK(tokens.dim() == 2 && tokens.size(0) == B && tokens.size(1) == T,
             "{}: tokens must be [B, T] = [{}, {}], got {}", fn, B, T,
             shape_str(tokens));
  RLHF_CHECK(loss_mask.sizes() == tokens.sizes(),
             "{}: loss_mask must be [{}, {}] like tokens, got {}", fn, B, T,
             shape_str(loss_mask));
  RLHF_CHECK(T >= 1, "{}: empty sequence (T = 0)", fn);
}

}  // namespace

torch::Tensor token_logprobs(const torch::Tensor& logits, const torch::Tensor& targets) {
  RLHF_CHECK(logits.dim() == 3, "token_logprobs: logits must be [B, T, V], got {} dims",
             logits.dim());
  RLHF_CHECK(targets.dim() == 2 && targets.size(0) == logits.size(0) &&
                 targets.size(1) == logits.size(1),
             "token_logprobs: targets must be [B, T] = [{}, {}], got {}", logits.size(0),
             logits.size(1), shape_str(targets));
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
  check_targets("masked_lm_loss", B, T, tokens, loss_mask);

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

namespace {

// Autocast off for a scope (the fused head manages its dtypes itself), restored on exit.
struct NoAutocast {
  compat::AutocastState prev = compat::autocast_state();
  NoAutocast() { compat::set_autocast_state({false, prev.dtype}); }
  ~NoAutocast() { compat::set_autocast_state(prev); }
};

// Σ_rows nll(h_r Wᵀ, target_r) with the gradients computed chunk by chunk in forward.
struct FusedHeadNll : public torch::autograd::Function<FusedHeadNll> {
  // h [M, C], w [V, C], targets [M] int64 -> scalar float32
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor h,
                               torch::Tensor w, torch::Tensor targets, int64_t chunk,
                               bool need_grad) {
    const auto ac = compat::autocast_state();
    const auto cd = (h.is_cuda() && ac.enabled) ? ac.dtype : w.scalar_type();  // matmul dtype
    NoAutocast no_ac;
    auto wc = w.to(cd), hc = h.to(cd);                                      // [V, C], [M, C]
    const int64_t M = h.size(0);
    const auto md = h.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;  // softmax math
    auto sum = torch::zeros({}, h.options().dtype(md));
    torch::Tensor gh, gw;
    if (need_grad) {
      gh = torch::empty_like(h);                                           // [M, C]
      gw = torch::zeros(w.sizes(), w.options().dtype(md));                 // [V, C]
    }
    for (int64_t s = 0; s < M; s += chunk) {
      const int64_t n = std::min(chunk, M - s);
      auto hs = hc.narrow(0, s, n);                                         // [n, C]
      auto t = targets.narrow(0, s, n).unsqueeze(1);                        // [n, 1]
      auto z = torch::mm(hs, wc.t()).to(md);                                // [n, V]
      auto lse = z.logsumexp(-1, true);                                     // [n, 1]
      sum += (lse - z.gather(1, t)).sum();
      if (!need_grad) continue;
      auto g = z.sub_(lse).exp_();                                          // softmax [n, V]
      g.scatter_add_(1, t, torch::full({n, 1}, -1.0, g.options()));         // - onehot
      auto gc = g.to(cd);
      gh.narrow(0, s, n).copy_(torch::mm(gc, wc));                         // [n, C]
      gw.add_(torch::mm(gc.t(), hs));                                       // [V, C]
    }
    ctx->saved_data["need_grad"] = need_grad;
    if (need_grad) {
      ctx->saved_data["gh"] = gh;
      ctx->saved_data["gw"] = gw.to(w.scalar_type());
    }
    return sum;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    TORCH_CHECK(ctx->saved_data["need_grad"].toBool(),
                "fused_lm_loss: backward through a loss computed without gradients");
    auto g = grad_out[0];  // scalar
    auto gh = ctx->saved_data["gh"].toTensor(), gw = ctx->saved_data["gw"].toTensor();
    return {gh * g.to(gh.scalar_type()), gw * g.to(gw.scalar_type()), torch::Tensor(),
            torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

LmLoss fused_lm_loss(const torch::Tensor& hidden, const torch::Tensor& weight,
                     const torch::Tensor& tokens, const torch::Tensor& loss_mask,
                     int64_t chunk_rows) {
  RLHF_CHECK(hidden.dim() == 3, "fused_lm_loss: hidden must be [B, T, C], got {} dims",
             hidden.dim());
  const int64_t B = hidden.size(0), T = hidden.size(1), C = hidden.size(2);
  RLHF_CHECK(weight.dim() == 2 && weight.size(1) == C,
             "fused_lm_loss: weight must be [V, C={}], got {}", C, shape_str(weight));
  check_targets("fused_lm_loss", B, T, tokens, loss_mask);
  RLHF_CHECK(chunk_rows >= 0, "fused_lm_loss: chunk_rows must be >= 0, got {}", chunk_rows);
  const int64_t V = weight.size(0);
  if (chunk_rows == 0) chunk_rows = std::max<int64_t>(1, (int64_t{1} << 26) / V);
  // Target rows only: position t-1 predicts token t where loss_mask[:, t].
  auto mask = loss_mask.slice(1, 1).to(torch::kBool).reshape({-1});               // [B*(T-1)]
  auto rows = mask.nonzero().squeeze(1);                                         // [M]
  auto h = hidden.slice(1, 0, T - 1).reshape({-1, C}).index_select(0, rows);     // [M, C]
  auto targets = tokens.slice(1, 1).reshape({-1}).to(torch::kLong).index_select(0, rows);  // [M]
  const bool need_grad =
      torch::GradMode::is_enabled() && (hidden.requires_grad() || weight.requires_grad());
  LmLoss out;
  out.tokens = rows.size(0);
  out.sum_nll = FusedHeadNll::apply(h, weight, targets, chunk_rows, need_grad);
  out.loss = out.sum_nll / static_cast<double>(std::max<int64_t>(out.tokens, 1));
  return out;
}

}  // namespace rlhf
