// rules.cpp — see rules.h.
#include "ppo/reward/rules.h"

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
             "(src/ppo/reward/rules.cpp)", name, known);
  return {};
}

RewardRows reward_rows(const Rollout& ro, const PromptData& data, const std::vector<int64_t>& idx,
                       const Tokenizer& tok) {
  RLHF_CHECK(static_cast<int64_t>(idx.size()) == ro.batch(), "reward_rows: {} prompt rows for {} responses",
             idx.size(), ro.batch());
  RewardRows r{decode_prompts(data, idx, tok), decode_responses(ro, tok), {}};
  const torch::Tensor eos = ro.has_eos.to(torch::kCPU);
  for (int64_t b = 0; b < ro.batch(); ++b) r.eos.push_back(eos[b].item<bool>());
  return r;
}

torch::Tensor rule_scores(const RewardRule& rule, const Rollout& ro, const PromptData& data,
                          const std::vector<int64_t>& idx, const Tokenizer& tok) {
  const RewardRows r = reward_rows(ro, data, idx, tok);
  std::vector<float> s(idx.size());
  for (size_t b = 0; b < idx.size(); ++b) s[b] = static_cast<float>(rule(r.prompts[b], r.responses[b], r.eos[b]));
  return torch::tensor(s, torch::kFloat).to(ro.tokens.device());  // [B]
}

}  // namespace rlhf
