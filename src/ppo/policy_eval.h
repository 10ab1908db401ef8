// policy_eval.h — evaluating policies on held-out prompts: mean raw reward (under a reward model,
// or whatever ppo.reward a training run uses: reward/source.h, scored once per evaluation),
// KL to a reference policy (per sequence, k1 on the policy's own samples: an unbiased estimate),
// response length, EOS rate, and on the embedded task the hidden scorer's mean; plus A-vs-B win
// rates on the same prompts with common random numbers (same sampling seed per batch).
// Contract: collective; prompts are sharded over ranks; results are global. A failing external
// reward throws StepAbortedError on every rank (reward/source.h).
#pragma once
#include <cmath>
#include <string>

#include <nlohmann/json.hpp>

#include "common/data/batch.h"
#include "common/data/data.h"
#include "common/model/generate.h"
#include "common/model/model.h"
#include "common/io/model_file.h"
#include "common/tokenizer/tokenizer.h"
#include "ppo/reward/source.h"

namespace rlhf {

class Communicator;

struct PolicyEvalOptions {
  SamplingConfig sampling;  // eos/pad ids are filled from the tokenizer
  uint64_t seed = 1;
  int64_t max_prompts = 0;  // 0 = all
  int64_t micro_batch = 32;
};

struct PolicyEvalResult {
  int64_t prompts = 0;
  double reward_mean = 0, reward_std = 0, kl_to_ref = NAN, length_mean = 0, eos_rate = 0;
  double hidden_mean = NAN;  // embedded task only
  nlohmann::json to_json(const std::string& prefix = "") const;
};

struct CompareResult {
  int64_t prompts = 0;
  double win_rate_rm = 0;          // P(r_A > r_B) + ½ P(tie) under the reward
  double win_rate_hidden = NAN;    // same under the hidden scorer (embedded task)
  PolicyEvalResult a, b;
};

// The ppo.max_new_tokens a PPO checkpoint was trained with (ckpt: checkpoint dir, run dir or
// model.h5; its state.yaml holds kl_coef and the run's config text); 0 when ckpt is not a PPO
// training checkpoint (SFT / RM checkpoints, bare model files). Throws naming state.yaml when the
// stored config does not parse.
int64_t ppo_response_length(const std::string& ckpt);


PolicyEvalResult evaluate_policy(CausalLM& policy, CausalLM* reference, const RewardSource& reward,
                                 const PromptData& prompts, const Tokenizer& tok, int64_t max_len,
                                 const PolicyEvalOptions& opt, Communicator& comm, const torch::Device& dev);

CompareResult compare_policies(CausalLM& a, CausalLM& b, const RewardSource& reward, const PromptData& prompts,
                               const Tokenizer& tok, int64_t max_len, const PolicyEvalOptions& opt,
                               Communicator& comm, const torch::Device& dev);

}  // namespace rlhf
