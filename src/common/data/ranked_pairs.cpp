// ranked_pairs.cpp — see ranked_pairs.h.
#include "common/data/ranked_pairs.h"

#include "common/core/check.h"

namespace rlhf {

RankedPairs ranked_pairs(const std::vector<int64_t>& group_offsets, const std::vector<int32_t>& ranks,
                         PairNormalizer normalizer, const char* caller) {
  const int64_t N = static_cast<int64_t>(ranks.size());
  RLHF_CHECK(group_offsets.size() >= 1 && group_offsets.front() == 0 && group_offsets.back() == N,
             "{}: group_offsets must start at 0 and end at N = {} (got {} entries)", caller, N,
             group_offsets.size());
  for (size_t g = 0; g + 1 < group_offsets.size(); ++g)
    RLHF_CHECK(group_offsets[g] <= group_offsets[g + 1],
               "{}: group_offsets decrease at group {} ({} > {})", caller, g, group_offsets[g],
               group_offsets[g + 1]);

  RankedPairs out;
  std::vector<int64_t> pair_group;   // [P] index into group_pairs
  std::vector<int64_t> group_pairs;  // normaliser n_g per contributing group
  for (size_t g = 0; g + 1 < group_offsets.size(); ++g) {
    const int64_t begin = group_offsets[g], end = group_offsets[g + 1];
    int64_t n = 0;
    for (int64_t i = begin; i < end; ++i)
      for (int64_t j = begin; j < end; ++j) {
        if (ranks[i] < ranks[j]) {
          out.better.push_back(i);
          out.worse.push_back(j);
          pair_group.push_back(static_cast<int64_t>(group_pairs.size()));
          ++n;
        } else if (i < j && ranks[i] == ranks[j]) {
          ++out.ties;
        }
      }
    const int64_t k = end - begin;
    if (n > 0) group_pairs.push_back(normalizer == PairNormalizer::Paper ? k * (k - 1) / 2 : n);
  }
  out.groups = static_cast<int64_t>(group_pairs.size());
  // Per-pair weight 1 / (n_g · G'): the weighted sum is the mean over groups of per-group losses.
  out.weight.resize(out.better.size());
  for (size_t p = 0; p < out.better.size(); ++p)
    out.weight[p] = 1.0 / (static_cast<double>(group_pairs[pair_group[p]]) * out.groups);
  return out;
}

}  // namespace rlhf
