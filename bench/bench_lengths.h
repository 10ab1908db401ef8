// bench_lengths.h — response lengths from real data for the benchmarks (bench_rollout,
// bench_ppo, bench_train --packing): the assistant replies of Open Assistant message trees,
// counted with a real tokenizer, scaled so the distribution's 95th percentile maps to the
// benchmark's longest response, and drawn per row from a seeded generator.
#pragma once
#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/core/check.h"
#include "common/tokenizer/tokenizer.h"

namespace rlhf::bench {

// Token counts of every assistant reply in the message trees of `path` (recursive).
inline std::vector<int64_t> reply_lengths(const std::string& path, const Tokenizer& tok) {
  std::ifstream in(path);
  RLHF_CHECK(in.good(), "--lengths {}: cannot open (run from the repository root, or pass the "
             "Open Assistant trees file)", path);
  std::vector<int64_t> out;
  std::function<void(const nlohmann::json&)> walk = [&](const nlohmann::json& m) {
    if (m.value("role", "") == "assistant" && m.contains("text"))
      out.push_back(static_cast<int64_t>(tok.encode(m["text"].get<std::string>()).size()));
    if (m.contains("replies"))
      for (const auto& r : m["replies"]) walk(r);
  };
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    RLHF_CHECK(!j.is_discarded() && j.contains("prompt"), "--lengths {}:{}: not a message tree", path, n);
    walk(j["prompt"]);
  }
  RLHF_CHECK(!out.empty(), "--lengths {}: no assistant replies", path);
  return out;
}

inline double quantile(std::vector<int64_t> v, double q) {
  std::sort(v.begin(), v.end());
  return static_cast<double>(v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))]);
}

// `rows` lengths drawn from `real` (seeded), each scaled by longest / p95(real), in [1, longest].
inline std::vector<int64_t> draw_lengths(const std::vector<int64_t>& real, int64_t longest,
                                         int64_t rows, uint64_t seed) {
  const double scale = static_cast<double>(longest) / quantile(real, 0.95);
  std::mt19937_64 rng(seed);
  std::vector<int64_t> out(rows);
  for (auto& l : out) {
    const double r = static_cast<double>(real[rng() % real.size()]) * scale;
    l = std::clamp<int64_t>(static_cast<int64_t>(std::lround(r)), 1, longest);
  }
  return out;
}

inline std::vector<int64_t> real_lengths(const std::string& path, const std::string& tokenizer,
                                         int64_t longest, int64_t rows, uint64_t seed) {
  return draw_lengths(reply_lengths(path, *load_tokenizer(tokenizer)), longest, rows, seed);
}

}  // namespace rlhf::bench
