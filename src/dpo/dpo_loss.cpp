// dpo_loss.cpp — see dpo_loss.h for the contract.
#include "dpo/dpo_loss.h"

#include "common/core/check.h"

namespace rlhf {

DpoLoss dpo_loss(const torch::Tensor& policy_logp, const torch::Tensor& reference_logp,
                 const std::vector<int64_t>& group_offsets, const std::vector<int32_t>& ranks,
                 const DpoOptions& opt, const torch::Tensor& lengths) {
  RLHF_CHECK(policy_logp.dim() == 1 && reference_logp.sizes() == policy_logp.sizes(),
             "dpo_loss: policy_logp and reference_logp must both be [N], got {} and {}",
             shape_str(policy_logp), shape_str(reference_logp));
  const int64_t N = policy_logp.size(0);
  RLHF_CHECK(static_cast<int64_t>(ranks.size()) == N, "dpo_loss: ranks has {} entries, log-probs have {}",
             ranks.size(), N);
  RLHF_CHECK(opt.beta > 0, "dpo_loss: dpo.beta must be > 0, got {}", opt.beta);
  RLHF_CHECK(opt.label_smoothing >= 0 && opt.label_smoothing <= 0.5,
             "dpo_loss: dpo.label_smoothing must be in [0, 0.5], got {}", opt.label_smoothing);
  const RankedPairs rp = ranked_pairs(group_offsets, ranks, opt.normalizer, "dpo_loss");

  DpoLoss out;
  out.pairs = static_cast<int64_t>(rp.better.size());
  out.ties = rp.ties;
  out.groups = rp.groups;
  if (out.pairs == 0) {
    out.loss = policy_logp.sum() * 0.0;  // keeps the graph so backward() still works
    return out;
  }
  const torch::Device dev = policy_logp.device();
  const auto long_opts = torch::TensorOptions().dtype(torch::kLong);
  const torch::Tensor wi = torch::tensor(rp.better, long_opts).to(dev);  // [P] chosen
  const torch::Tensor li = torch::tensor(rp.worse, long_opts).to(dev);   // [P] rejected
  const torch::Tensor weight = torch::tensor(rp.weight, torch::TensorOptions().dtype(torch::kDouble))
                                   .to(dev, policy_logp.scalar_type());  // [P]
  torch::Tensor ratio = policy_logp - reference_logp.detach();           // [N] log π − log π_ref
  if (opt.loss == DpoLossKind::Ipo && opt.ipo_average) {                 // per-token means
    RLHF_CHECK(lengths.defined() && lengths.sizes() == policy_logp.sizes(),
               "dpo_loss: dpo.ipo_average needs the responses' lengths [{}], got {}", N,
               lengths.defined() ? shape_str(lengths) : std::string("none"));
    ratio = ratio / lengths.to(ratio.device(), ratio.scalar_type()).clamp_min(1.0);
  }
  const torch::Tensor reward = ratio * opt.beta;                          // [N] implicit rewards
  const torch::Tensor h = reward.index_select(0, wi) - reward.index_select(0, li);  // [P]
  torch::Tensor per_pair;                                                  // [P]
  if (opt.loss == DpoLossKind::Sigmoid) {
    // −log σ(h) = softplus(−h), −log σ(−h) = softplus(h)
    const double eps = opt.label_smoothing;
    per_pair = torch::softplus(-h) * (1.0 - eps);
    if (eps > 0) per_pair = per_pair + torch::softplus(h) * eps;
  } else {
    per_pair = (h / opt.beta - 1.0 / (2.0 * opt.beta)).pow(2);
  }
  out.loss = (per_pair * weight).sum();

  torch::NoGradGuard no_grad;
  const torch::Tensor hd = h.detach().to(torch::kDouble);
  const torch::Tensor rd = reward.detach().to(torch::kDouble), pd = policy_logp.detach().to(torch::kDouble);
  const torch::Tensor stats =
      torch::stack({(hd > 0).to(torch::kDouble).sum(), hd.sum(), rd.index_select(0, wi).sum(),
                    rd.index_select(0, li).sum(), pd.index_select(0, wi).sum(), pd.index_select(0, li).sum()})
          .cpu();
  out.correct = static_cast<int64_t>(stats[0].item<double>());
  out.margin_sum = stats[1].item<double>();
  out.chosen_reward_sum = stats[2].item<double>();
  out.rejected_reward_sum = stats[3].item<double>();
  out.chosen_logp_sum = stats[4].item<double>();
  out.rejected_logp_sum = stats[5].item<double>();
  return out;
}

}  // namespace rlhf
