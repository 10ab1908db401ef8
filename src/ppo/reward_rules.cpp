// reward_rules.cpp — see reward_rules.h.
#include "ppo/reward_rules.h"

#include <utility>

#include "common/core/check.h"
#include "common/task/synth_task.h"

namespace rlhf {

namespace {
const std::vector<std::pair<std::string, RewardRule>>& registry() {
  static const std::vector<std::pair<std::string, RewardRule>> r{
      {"synth_hidden", [](const std::string& p, const std::string& y, bool eos) {
         return synth_hidden_score(p, y, eos);
       }}};
  return r;
}
}  // namespace

std::vector<std::string> reward_rule_names() {
  std::vector<std::string> names;
  for (const auto& [name, rule] : registry()) names.push_back(name);
  return names;
}

RewardRule reward_rule(const std::string& name) {
  for (const auto& [n, rule] : registry())
    if (n == name) return rule;
  std::string known;
  for (const auto& n : reward_rule_names()) known += (known.empty() ? "" : ", ") + n;
  RLHF_CHECK(false, "ppo.reward_rule = '{}' is not a registered reward rule; registered: {} "
             "(src/ppo/reward_rules.cpp)", name, known);
  return {};
}

torch::Tensor rule_scores(const RewardRule& rule, const Rollout& ro, const PromptData& data,
                          const std::vector<int64_t>& idx, const Tokenizer& tok) {
  RLHF_CHECK(static_cast<int64_t>(idx.size()) == ro.batch(), "rule_scores: {} prompt rows for {} responses",
             idx.size(), ro.batch());
  const std::vector<std::string> prompts = decode_prompts(data, idx, tok);
  const std::vector<std::string> responses = decode_responses(ro, tok);
  const torch::Tensor eos = ro.has_eos.to(torch::kCPU);
  std::vector<float> s(idx.size());
  for (size_t b = 0; b < idx.size(); ++b)
    s[b] = static_cast<float>(rule(prompts[b], responses[b], eos[b].item<bool>()));
  return torch::tensor(s, torch::kFloat).to(ro.tokens.device());  // [B]
}

}  // namespace rlhf
