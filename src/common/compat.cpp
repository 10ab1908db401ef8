#include "common/compat.h"

#include <cmath>

namespace rlhf::compat {

static torch::Tensor math_attention(const torch::Tensor& q, const torch::Tensor& k,
                                    const torch::Tensor& v, const torch::Tensor& mask, bool causal,
                                    double dropout_p, bool training) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto att = torch::matmul(q, k.transpose(-2, -1)) * scale;  // [B, H, Tq, Tk]
  torch::Tensor allowed = mask;
  if (causal) {
    const int64_t tq = q.size(-2), tk = k.size(-2);
    auto c = torch::ones({tq, tk}, torch::dtype(torch::kBool).device(q.device())).tril(tk - tq);
    allowed = allowed.defined() ? allowed.logical_and(c) : c;
  }
  if (allowed.defined()) att = att.masked_fill(allowed.logical_not(), -INFINITY);
  att = torch::softmax(att.to(torch::kFloat), -1).to(q.scalar_type());
  // A fully masked row (a pad query) gives NaN; zero it so pads never poison the batch.
  att = torch::nan_to_num(att, 0.0);
  if (training && dropout_p > 0) att = torch::dropout(att, dropout_p, true);
  return torch::matmul(att, v);  // [B, H, Tq, D]
}

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask, bool causal, double dropout_p, bool training,
                        bool force_math) {
#if RLHF_HAS_SDPA
  if (!force_math) {
    torch::Tensor m = mask;
    if (causal && m.defined()) {
      const int64_t tq = q.size(-2), tk = k.size(-2);
      auto c = torch::ones({tq, tk}, torch::dtype(torch::kBool).device(q.device())).tril(tk - tq);
      m = m.logical_and(c);
      causal = false;
    }
    // Rows with no allowed key (left pads) would be NaN; let them attend to everything, their
    // outputs are masked out downstream anyway.
    if (m.defined()) m = m.logical_or(m.any(-1, true).logical_not());
    return at::scaled_dot_product_attention(q, k, v, m.defined() ? c10::optional<at::Tensor>(m) : c10::nullopt,
                                            training ? dropout_p : 0.0, causal);
  }
#endif
  return math_attention(q, k, v, mask, causal, dropout_p, training);
}

bool fused_adamw_available(const torch::Device& device) {
#if TORCH_VERSION_MAJOR >= 2
  return device.is_cuda();
#else
  (void)device;
  return false;
#endif
}

}  // namespace rlhf::compat
