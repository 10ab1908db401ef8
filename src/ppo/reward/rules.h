// rules.h — rule rewards (issue 19): ppo.reward: rule scores each response with a C++
// function instead of a reward model (no reward model is loaded). A registry by name
// (ppo.reward_rule); the first entry is the embedded task's hidden scorer.
//
//   synth_hidden  score = synth_hidden_score(prompt, response, ended_with_eos)
//                 (common/task/synth_task.h; prompts from `rlhf_prep synth` only)
//
// Contract:
// - A rule is a pure function of the decoded prompt, the decoded response (up to, not including,
//   EOS; decode_responses) and whether the response ended with EOS; it returns the raw score that
//   the no-EOS penalty and score clip then act on, as with a reward model (ppo_step.h).
// - reward_rule(name) throws for an unknown name, listing the registered ones.
// - rule_scores runs on the host (decodes every row); returns [B] float32 on ro's device.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/data/data.h"
#include "ppo/rollout.h"

namespace rlhf {

using RewardRule = std::function<double(const std::string& prompt, const std::string& response,
                                        bool ended_with_eos)>;

// The registered names, in registry order.
std::vector<std::string> reward_rule_names();
// The rule called `name`; an error naming ppo.reward_rule and listing the names otherwise.
RewardRule reward_rule(const std::string& name);

// What a rule or an external reward sees of ro's rows, whose prompts are data rows idx [B]: the
// decoded prompt, the decoded response (up to EOS) and whether it ended with EOS, per row.
struct RewardRows {
  std::vector<std::string> prompts, responses;
  std::vector<bool> eos;
};
RewardRows reward_rows(const Rollout& ro, const PromptData& data, const std::vector<int64_t>& idx,
                       const class Tokenizer& tok);

// Raw scores of ro's rows, whose prompts are data rows idx [B]: [B] float32 on ro's device.
torch::Tensor rule_scores(const RewardRule& rule, const Rollout& ro, const PromptData& data,
                          const std::vector<int64_t>& idx, const class Tokenizer& tok);

}  // namespace rlhf
