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
  const RankedPairs rp = ranked_pairs(group_offsets, ranks, normalizer, "kwise_ranking_loss");

  RankingLoss out;
  out.pairs = static_cast<int64_t>(rp.better.size());
  out.groups = rp.groups;
  if (out.pairs == 0) {
    out.loss = rewards.sum() * 0.0;  // keeps the graph so backward() still works
    return out;
  }

  const auto long_opts = torch::TensorOptions().dtype(torch::kLong);
  const torch::Tensor bi = torch::tensor(rp.better, long_opts).to(rewards.device());  // [P]
  const torch::Tensor wi = torch::tensor(rp.worse, long_opts).to(rewards.device());   // [P]
  const torch::Tensor w =
      torch::tensor(rp.weight, torch::TensorOptions().dtype(torch::kDouble))
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
