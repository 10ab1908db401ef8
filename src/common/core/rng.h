// rng.h — the project's one platform-independent random generator (splitmix64) and seed mixer.
// Used wherever a result must be identical on every platform and libstdc++ version (samplers,
// the embedded task, per-step seeds): std::shuffle and std::uniform_int_distribution are
// implementation-defined and never used for that.
// Contract: header-only, no global state; the same seed gives the same stream everywhere.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "common/core/check.h"

namespace rlhf {

// One splitmix64 step (Steele, Lea & Flood 2014): advances state, returns a 64-bit output.
inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next_u64() { return splitmix64(state_); }
  // Uniform in [0, n), unbiased (rejection of the top partial range). REQUIRES: n > 0.
  int64_t uniform(int64_t n) {
    RLHF_CHECK(n > 0, "SplitMix64::uniform: n = {} must be positive", n);
    const uint64_t bound = static_cast<uint64_t>(n);
    const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t r;
    do r = next_u64(); while (r >= limit);
    return static_cast<int64_t>(r % bound);
  }
  double uniform01() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }  // [0, 1)
  uint64_t state() const { return state_; }

 private:
  uint64_t state_;
};

// A permutation of [0, n) (Fisher-Yates driven by SplitMix64(seed)): the same on every platform.
inline std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<int64_t> p(n);
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[rng.uniform(i + 1)]);
  return p;
}

// A seed for (seed, step, rank, salt) without state to checkpoint: exact on resume.
inline uint64_t mix_seed(uint64_t seed, int64_t step, int rank, uint64_t salt) {
  uint64_t h = seed * 0x9E3779B97F4A7C15ULL ^ (static_cast<uint64_t>(step) + 0x632BE59BD9B4E019ULL);
  h ^= (static_cast<uint64_t>(rank) << 32) ^ (salt * 0xBF58476D1CE4E5B9ULL);
  h ^= h >> 31;
  h *= 0x94D049BB133111EBULL;
  return h ^ (h >> 29);
}

}  // namespace rlhf
