#include "common/core/compat.h"

#include <cmath>

#include <ATen/autocast_mode.h>

namespace rlhf::compat {

// Combined "may attend" mask, or undefined when there is neither padding nor a causal offset
// that needs one. Rows with no allowed key attend to everything (no NaN).
static torch::Tensor allowed_mask(const torch::Tensor& q, const torch::Tensor& k,
                                  const torch::Tensor& mask, bool causal) {
  torch::Tensor allowed = mask;
  if (causal) {
    const int64_t tq = q.size(-2), tk = k.size(-2);
    auto c = torch::ones({tq, tk}, torch::dtype(torch::kBool).device(q.device())).tril(tk - tq);
    allowed = allowed.defined() ? allowed.logical_and(c) : c;  // [B|1, 1, Tq, Tk]
  }
  if (allowed.defined()) allowed = allowed.logical_or(allowed.any(-1, true).logical_not());
  return allowed;
}

static torch::Tensor math_attention(const torch::Tensor& q, const torch::Tensor& k,
                                    const torch::Tensor& v, const torch::Tensor& mask, bool causal,
                                    double dropout_p, bool training) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto att = torch::matmul(q, k.transpose(-2, -1)) * scale;  // [B, H, Tq, Tk]
  torch::Tensor allowed = allowed_mask(q, k, mask, causal);
  if (allowed.defined()) att = att.masked_fill(allowed.logical_not(), -INFINITY);
  att = torch::softmax(att.to(torch::kFloat), -1).to(q.scalar_type());
  if (training && dropout_p > 0) att = torch::dropout(att, dropout_p, true);
  return torch::matmul(att, v);  // [B, H, Tq, D]
}

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask, bool causal, double dropout_p, bool training,
                        bool force_math) {
#if RLHF_HAS_SDPA
  if (!force_math) {
    const double p = training ? dropout_p : 0.0;
    // Pure causal with Tq == Tk and no padding: let SDPA pick the flash kernel.
    if (causal && !mask.defined() && q.size(-2) == k.size(-2))
      return at::scaled_dot_product_attention(q, k, v, {}, p, true);
    torch::Tensor m = allowed_mask(q, k, mask, causal);
    if (!m.defined()) return at::scaled_dot_product_attention(q, k, v, {}, p, false);
    return at::scaled_dot_product_attention(q, k, v, m, p, false);
  }
#endif
  return math_attention(q, k, v, mask, causal, dropout_p, training);
}

AutocastState autocast_state() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  return {at::autocast::is_autocast_enabled(at::kCUDA), at::autocast::get_autocast_dtype(at::kCUDA)};
#else
  return {at::autocast::is_enabled(), at::autocast::get_autocast_gpu_dtype()};
#endif
}

void set_autocast_state(const AutocastState& s) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  at::autocast::set_autocast_enabled(at::kCUDA, s.enabled);
  at::autocast::set_autocast_dtype(at::kCUDA, s.dtype);
#else
  at::autocast::set_enabled(s.enabled);
  at::autocast::set_autocast_gpu_dtype(s.dtype);
#endif
}

AutocastScope::AutocastScope(bool enabled, at::ScalarType dtype) : active_(enabled) {
  if (!active_) return;
  prev_ = autocast_state();
  set_autocast_state({true, dtype});
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  set_autocast_state(prev_);
  at::autocast::clear_cache();
}

void clear_autocast_cache() { at::autocast::clear_cache(); }

bool fused_adamw_step(const std::vector<torch::Tensor>& params,
                      const std::vector<torch::Tensor>& grads, const std::vector<torch::Tensor>& m,
                      const std::vector<torch::Tensor>& v, const torch::Tensor& step, double lr,
                      double beta1, double beta2, double weight_decay, double eps) {
#if TORCH_VERSION_MAJOR >= 2
  if (params.empty()) return true;
  if (!params[0].is_cuda()) return false;
  std::vector<torch::Tensor> steps(params.size(), step);  // the kernel only reads the step count
  at::_fused_adamw_(params, grads, m, v, /*max_exp_avg_sqs=*/{}, steps, lr, beta1, beta2,
                    weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
  return true;
#else
  (void)params, (void)grads, (void)m, (void)v, (void)step, (void)lr, (void)beta1, (void)beta2,
      (void)weight_decay, (void)eps;
  return false;
#endif
}

}  // namespace rlhf::compat
