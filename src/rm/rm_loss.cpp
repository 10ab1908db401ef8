// rm_loss.cpp — see rm_loss.h for the contract.
#include "rm/rm_loss.h"

#include "common/core/check.h"

namespace rlhf {

RankingLoss kwise_ranking_loss(const torch::Tensor& rewards,
                               const std::vector<int64_t>& group_offsets,
                               const std::vector<int32_t>& ranks, PairNormalizer normalizer) {
  RLHF_CHECK(rewards.dim() == 1, "kwise_ranking_loss: rewards must be [N], got {} dims",
             rewards.dim());
  const int64_t N = rewards.size(0);
  RLHF_CHECK(static_cast<int64_t>(ranks.size()) == N,
             "kwise_ranking_loss: ranks has {} entries, rewards has {}", ranks.size(), N);
  RLHF_CHECK(group_offsets.size() >= 1 && group_offsets.front() == 0 && group_offsets.back() == N,
             "kwise_ranking_loss: group_offsets must start at 0 and end at N = {} (got {} entries)",
             N, group_offsets.size());
  for (size_t g = 0; g + 1 < group_offsets.size(); ++g)
    RLHF_CHECK(group_offsets[g] <= group_offsets[g + 1],
               "kwise_ranking_loss: group_offsets decrease at group {} ({} > {})", g,
               group_offsets[g], group_offsets[g + 1]);

  // Host side: enumerate every ordered pair (better, worse) of every group.
  std::vector<int64_t> better, worse, pair_group;
  std::vector<int64_t> group_pairs;  // normaliser n_g per contributing group
  for (size_t g = 0; g + 1 < group_offsets.size(); ++g) {
    const int64_t begin = group_offsets[g], end = group_offsets[g + 1];
    int64_t n = 0;
    for (int64_t i = begin; i < end; ++i)
      for (int64_t j = begin; j < end; ++j)
        if (ranks[i] < ranks[j]) {
          better.push_back(i);
          worse.push_back(j);
          pair_group.push_back(static_cast<int64_t>(group_pairs.size()));
          ++n;
        }
    const int64_t k = end - begin;
    if (n > 0) group_pairs.push_back(normalizer == PairNormalizer::Paper ? k * (k - 1) / 2 : n);
  }

  RankingLoss out;
  out.pairs = static_cast<int64_t>(better.size());
  out.groups = static_cast<int64_t>(group_pairs.size());
  if (out.pairs == 0) {
    out.loss = rewards.sum() * 0.0;  // keeps the graph so backward() still works
    return out;
  }

  // Per-pair weight 1 / (n_g · G'): the weighted sum is the mean over groups of per-group losses.
  std::vector<double> weight(better.size());
  for (size_t p = 0; p < better.size(); ++p)
    weight[p] = 1.0 / (static_cast<double>(group_pairs[pair_group[p]]) * out.groups);

  const auto long_opts = torch::TensorOptions().dtype(torch::kLong);
  const torch::Tensor bi = torch::tensor(better, long_opts).to(rewards.device());   // [P]
  const torch::Tensor wi = torch::tensor(worse, long_opts).to(rewards.device());    // [P]
  const torch::Tensor w =
      torch::tensor(weight, torch::TensorOptions().dtype(torch::kDouble))
          .to(rewards.device(), rewards.scalar_type());                               // [P]
  const torch::Tensor margin = rewards.index_select(0, bi) - rewards.index_select(0, wi);  // [P]
  out.loss = (torch::softplus(-margin) * w).sum();

  {
    torch::NoGradGuard no_grad;
    const torch::Tensor m = margin.detach().to(torch::kDouble);
    const torch::Tensor stats = torch::stack({(m > 0).to(torch::kDouble).sum(), m.sum()}).cpu();
    out.correct = static_cast<int64_t>(stats[0].item<double>());
    out.margin_sum = stats[1].item<double>();
  }
  return out;
}

}  // namespace rlhf
