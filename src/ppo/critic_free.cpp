// critic_free.cpp — see critic_free.h.
#include "ppo/critic_free.h"

#include "common/core/check.h"
#include "ppo/ppo_loss.h"

namespace rlhf {

std::vector<int64_t> repeat_each(const std::vector<int64_t>& idx, int64_t n) {
  std::vector<int64_t> out;
  out.reserve(idx.size() * static_cast<size_t>(n));
  for (int64_t i : idx)
    for (int64_t k = 0; k < n; ++k) out.push_back(i);
  return out;
}

void critic_free_advantages(Rollout& ro, AdvantageKind kind, int64_t group, double kl_coef,
                            Communicator& comm) {
  torch::NoGradGuard ng;
  ro.old_values = torch::zeros_like(ro.kl);  // [B, N]
  if (kind == AdvantageKind::ReinforcePp) {
    const torch::Tensor g = reinforce_pp_returns(ro.rewards, ro.response_mask);  // [B, N]
    ro.returns = g;
    const MaskedStats st = masked_stats(g, ro.response_mask);
    const MaskedStats glob{comm.all_reduce_scalar(st.sum), comm.all_reduce_scalar(st.sum_sq),
                           comm.all_reduce_scalar(st.count)};
    ro.advantages = masked_whiten_with(g, ro.response_mask, glob.mean(), glob.var());
    return;
  }
  RLHF_CHECK(ro.score.dim() == 1 && ro.kl.dim() == 2 && ro.kl.size(0) == ro.score.size(0),
             "critic_free_advantages: score [B] and kl [B, N] expected");
  const torch::Tensor adv = group_advantages(ro.score, group, kind);   // [B] score only
  // −β·KL per token, summed to the response's end (γ = 1): 0 everywhere when β = 0.
  const torch::Tensor kl_to_go = reinforce_pp_returns(ro.kl * -kl_coef, ro.response_mask);  // [B, N]
  ro.advantages = per_token(adv, ro.response_mask) + kl_to_go;                         // [B, N]
  ro.returns = per_token(ro.score, ro.response_mask) + kl_to_go;                       // [B, N]
}

nlohmann::json critic_free_metrics(const Rollout& ro, AdvantageKind kind, int64_t group, Communicator& comm) {
  torch::NoGradGuard ng;
  const torch::Tensor m = ro.response_mask.to(torch::kDouble);                  // [B, N]
  const torch::Tensor a = ro.advantages.to(torch::kDouble) * m;                 // [B, N]
  const double tokens = std::max(1.0, comm.all_reduce_scalar(m.sum().item<double>()));
  nlohmann::json j = {
      {"adv_mean", comm.all_reduce_scalar(a.sum().item<double>()) / tokens},
      {"adv_abs_mean", comm.all_reduce_scalar(a.abs().sum().item<double>()) / tokens},
      {"adv_abs_max", comm.all_reduce_scalar(a.abs().max().item<double>(), ReduceOp::Max)}};
  if (kind == AdvantageKind::ReinforcePp) return j;
  const torch::Tensor seq_adv = a.sum(1) / m.sum(1).clamp_min(1.0);              // [B]
  const double rows = comm.all_reduce_scalar(static_cast<double>(seq_adv.size(0)));
  j["adv_seq_mean"] = comm.all_reduce_scalar(seq_adv.sum().item<double>()) / std::max(1.0, rows);
  const torch::Tensor rg = ro.score.to(torch::kDouble).view({-1, group});       // [G, n] scores
  const torch::Tensor tied = (rg.amax(1) - rg.amin(1)).abs() <= 1e-12;          // [G]
  const double groups = comm.all_reduce_scalar(static_cast<double>(rg.size(0)));
  j["groups_tied"] = comm.all_reduce_scalar(tied.to(torch::kDouble).sum().item<double>()) / std::max(1.0, groups);
  return j;
}

}  // namespace rlhf
