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

// Stand-in for at::_fused_adamw on versions that have it; returns false when not available.
bool fused_adamw_available(const torch::Device& device);

}  // namespace rlhf::compat
