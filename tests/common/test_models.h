// Small random models shared by the generation and GPU-path tests.
#pragma once
#include <cstdint>

#include <torch/torch.h>

#include "common/model.h"

namespace rlhf::testing {

// 2 layers, 4 heads (kv heads: `kv`), d_model 32, vocab 41, context 64.
inline ModelConfig small_gen_cfg(Family f, int64_t kv) {
  ModelConfig c;
  c.family = f;
  c.vocab_size = 41;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = kv;
  c.d_model = 32;
  c.d_ff = 64;
  c.max_seq_len = 64;
  return c;
}

// Seeded init with every weight scaled by 8: sharper distributions than the 0.02 init, so
// greedy and sampled continuations differ between models and positions.
inline CausalLM sharp_model(Family f, int64_t kv, uint64_t seed) {
  torch::manual_seed(seed);
  CausalLM m(small_gen_cfg(f, kv));
  torch::NoGradGuard ng;
  for (auto& p : m->parameters()) p.mul_(8.0);
  return m;
}

}  // namespace rlhf::testing
