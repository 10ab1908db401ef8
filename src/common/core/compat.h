// compat.h — the only place that knows which libtorch we build against.
// Debian 12 ships libtorch 1.13 (CPU); the GPU machine has pip PyTorch 2.x (CUDA).
#pragma once
#include <torch/torch.h>
#include <torch/version.h>

#if TORCH_VERSION_MAJOR >= 2
#define RLHF_HAS_SDPA 1
#else
#define RLHF_HAS_SDPA 0
#endif

namespace rlhf::compat {

// Fused scaled-dot-product attention where available (flash path on GPU), otherwise a plain
// masked softmax with identical semantics. q [B,H,Tq,D], k/v [B,H,Tk,D];
// mask: bool, broadcastable to [B,1,Tq,Tk] (true = attend), or undefined = no padding.
// causal: query i (0-based) may see keys j <= i + (Tk - Tq) (bottom-right aligned, so a decode
// step with a cache sees the whole prefix). A query row with no allowed key at all (a left-pad
// query) attends to every key instead of giving NaN, on both paths; its output is meaningless and
// must be masked out by the caller.
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask, bool causal, double dropout_p, bool training,
                        bool force_math = false);

// Autocast state (CUDA autocast: enabled flag + dtype), for replaying a forward in backward.
struct AutocastState {
  bool enabled = false;
  at::ScalarType dtype = at::kHalf;
};
AutocastState autocast_state();
void set_autocast_state(const AutocastState& s);

// RAII: CUDA autocast to `dtype` for the scope (no-op when !enabled); restores the previous
// state and clears autocast's weight-cast cache on exit.
class AutocastScope {
 public:
  explicit AutocastScope(bool enabled, at::ScalarType dtype = at::kBFloat16);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_;
  AutocastState prev_;
};

// Autocast keeps low-precision copies of the weights until cleared: call after every optimizer
// step (stale copies would otherwise be used by the next forward).
void clear_autocast_cache();

// One AdamW step (PyTorch semantics: decoupled decay p *= 1 - lr*wd; denom = sqrt(v)/sqrt(bc2)
// + eps; p -= lr/bc1 * m/denom) over CUDA tensors with at::_fused_adamw_ (libtorch >= 2).
// `step` is a float32 tensor on the params' device holding the (already incremented) step
// count. Returns false (nothing done) when the fused kernel is unavailable or params are on CPU.
bool fused_adamw_step(const std::vector<torch::Tensor>& params,
                      const std::vector<torch::Tensor>& grads, const std::vector<torch::Tensor>& m,
                      const std::vector<torch::Tensor>& v, const torch::Tensor& step, double lr,
                      double beta1, double beta2, double weight_decay, double eps);

}  // namespace rlhf::compat
