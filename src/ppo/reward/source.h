// source.h — ppo.reward behind one call: the raw scores of sampled rollouts under the
// frozen reward model (rm), a registered rule (reward/rules.h), an external program
// (reward/command.h) or an HTTP reward server (reward/remote.h). The training iterations score
// their rollouts with it and so does the held-out evaluation (policy_eval.h), so eval_reward_mean
// means what rm_score_raw means in training, whatever ppo.reward is.
//
// Contract:
// - score() takes this rank's batches (possibly none), each a rollout whose prompts are rows idx
//   of `data`, and returns one [B_i] float32 tensor per batch on its rollout's device: the raw
//   score, before the no-EOS penalty and the score clip.
// - For command and remote it is collective, one exchange per call however many batches (the
//   program's runs, the series of requests, for all the rows): every rank calls it the same
//   number of times, and a failure on any rank throws StepAbortedError on every rank. For rm and
//   rule it is local and throws only for a bug.
// - The reward model, when there is one, must be on the rollouts' device (ppo.offload_frozen:
//   OnDeviceScope around the call).
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/data/batch.h"
#include "common/data/data.h"
#include "common/dist/dist.h"
#include "common/model/model.h"
#include "common/train/config.h"
#include "ppo/ppo_config.h"
#include "ppo/reward/remote.h"
#include "ppo/reward/rules.h"
#include "ppo/rollout.h"

namespace rlhf {

class RewardSource {
 public:
  // The reward model rm alone (rlhf_eval).
  explicit RewardSource(ScalarModel rm);
  // ppo.reward of pc: rm scores with `rm` (loaded, frozen); rule, command and remote decode the
  // rows with tok, remote frames them by the policy's special ids. The rule name is looked up
  // here (an unknown one throws naming ppo.reward_rule). command_rows: the most rows one run of
  // ppo.reward_command gets (ppo_train: an iteration's rows per rank, so the held-out
  // evaluation's runs are no larger than the training ones, each with the whole timeout).
  RewardSource(const PpoSection& pc, ScalarModel rm, const SpecialIds& ids, const Tokenizer& tok,
               int64_t command_rows = 0);

  // command and remote: score() is collective.
  bool collective() const { return kind_ == RewardKind::Command || kind_ == RewardKind::Remote; }

  RewardKind kind() const { return kind_; }

  // One [B_i] tensor per batch; see the contract.
  std::vector<torch::Tensor> score(const std::vector<RolloutBatch>& batches, const PromptData& data,
                                   Communicator& comm) const;
  // The same for one batch: [B].
  torch::Tensor score(const Rollout& ro, const PromptData& data, const std::vector<int64_t>& idx,
                      Communicator& comm) const;

 private:
  RewardKind kind_ = RewardKind::Rm;
  ScalarModel rm_{nullptr};
  RewardRule rule_;
  std::string command_;
  double timeout_s_ = 0;
  int64_t command_rows_ = 0;
  RemoteRewardOptions remote_;
  QueryFraming framing_{};
  const Tokenizer* tok_ = nullptr;
};

}  // namespace rlhf
