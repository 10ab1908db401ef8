// tensor_checks.h — the argument checks PPO's math functions share (ppo_loss.cpp,
// advantages.cpp): shapes that must match, and a mask of any dtype read as bool.
#pragma once
#include <torch/torch.h>

#include "common/core/check.h"
#include "common/core/strings.h"

namespace rlhf {

// Throws naming fn and the argument unless t is defined and shaped like ref.
inline void check_same_shape(const char* fn, const char* name, const torch::Tensor& t, const torch::Tensor& ref) {
  RLHF_CHECK(t.defined() && t.sizes() == ref.sizes(), "{}: {} must have shape {}, got {}", fn, name,
             shape_str(ref), shape_str(t));
}

// The mask as bool (nonzero = true).
inline torch::Tensor as_bool(const torch::Tensor& mask) {
  return mask.scalar_type() == torch::kBool ? mask : mask.ne(0);
}

}  // namespace rlhf
