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
// mask: bool [B,1,Tq,Tk] (true = attend) or undefined for pure causal with Tq == Tk.
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask, bool causal, double dropout_p, bool training,
                        bool force_math = false);

// Stand-in for at::_fused_adamw on versions that have it; returns false when not available.
bool fused_adamw_available(const torch::Device& device);

}  // namespace rlhf::compat
