// Small random models shared by the generation and GPU-path tests.
#pragma once
#include <cstdint>

#include <torch/torch.h>

#include "common/model/model.h"
#include "support/test_support.h"

namespace rlhf::testing {

// Seeded init with every weight scaled by 8: sharper distributions than the 0.02 init, so
// greedy and sampled continuations differ between models and positions.
inline CausalLM sharp_model(Family f, int64_t kv, uint64_t seed) {
  torch::manual_seed(seed);
  CausalLM m(tiny_config(f, kv));
  torch::NoGradGuard ng;
  for (auto& p : m->parameters()) p.mul_(8.0);
  return m;
}

}  // namespace rlhf::testing
