#include "ppo/reward/source.h"

#include "common/core/check.h"
#include "ppo/reward/command.h"

namespace rlhf {

RewardSource::RewardSource(ScalarModel rm) : kind_(RewardKind::Rm), rm_(std::move(rm)) {
  RLHF_CHECK(!rm_.is_empty(), "RewardSource: no reward model");
}

RewardSource::RewardSource(const PpoSection& pc, ScalarModel rm, const SpecialIds& ids, const Tokenizer& tok,
                           int64_t command_rows)
    : kind_(pc.reward), rm_(std::move(rm)), command_rows_(command_rows), tok_(&tok) {
  switch (kind_) {
    case RewardKind::Rm:
      RLHF_CHECK(!rm_.is_empty(), "ppo.reward: rm, but no reward model was loaded");
      break;
    case RewardKind::Rule:
      rule_ = reward_rule(pc.reward_rule);
      break;
    case RewardKind::Command:
      command_ = pc.reward_command;
      timeout_s_ = pc.reward_timeout_s;
      break;
    case RewardKind::Remote:
      remote_ = {pc.reward_url, pc.reward_timeout_s, pc.reward_retries, pc.reward_batch_size};
      framing_ = query_framing(ids.bos, ids.eos, ids.add_eos);
      break;
  }
}

std::vector<torch::Tensor> RewardSource::score(const std::vector<RolloutBatch>& batches, const PromptData& data,
                                               Communicator& comm) const {
  switch (kind_) {
    case RewardKind::Command:
      return command_scores(command_, timeout_s_, command_rows_, batches, data, *tok_, comm);
    case RewardKind::Remote:
      return remote_scores(remote_, batches, framing_, *tok_, comm);
    case RewardKind::Rm:
    case RewardKind::Rule:
      break;
  }
  torch::NoGradGuard ng;
  ScalarModel rm = rm_;  // (a handle: score_rollout takes it non-const)
  std::vector<torch::Tensor> out;
  for (const RolloutBatch& b : batches)
    out.push_back(kind_ == RewardKind::Rm ? score_rollout(rm, *b.ro)  // [B_i]
                                          : rule_scores(rule_, *b.ro, data, *b.idx, *tok_));
  return out;
}

torch::Tensor RewardSource::score(const Rollout& ro, const PromptData& data, const std::vector<int64_t>& idx,
                                  Communicator& comm) const {
  return score({RolloutBatch{&ro, &idx}}, data, comm).at(0);
}

}  // namespace rlhf
