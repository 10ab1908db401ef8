// ppo_config.h — ppo_train's own settings: the ppo.* keys (and data.pretrain / data.pretrain_eval),
// their defaults, every check that needs no model or data, and the option structs the iterations
// read (ExperienceOptions, UpdateOptions), built here from them. docs/CONFIG.md documents each key.
// Adding a key: a field in PpoSection, a line in add_ppo_keys (ppo_config.cpp), its checks there,
// CONFIG.md, and the code that uses it.
#pragma once
#include <cstdint>
#include <string>

#include "common/model/generate.h"
#include "common/train/config.h"
#include "common/train/stage_spec.h"
#include "ppo/advantages.h"
#include "ppo/ppo_loss.h"
#include "ppo/ppo_step.h"

namespace rlhf {

// ppo.reward: the frozen reward model, a C++ rule by name (ppo/reward/rules.h), an external
// program fed JSONL on stdin (ppo/reward/command.h), or an HTTP reward server (ppo/reward/remote.h).
enum class RewardKind { Rm, Rule, Command, Remote };
inline constexpr EnumNames<RewardKind, 4> kRewardNames{{{RewardKind::Rm, "rm"}, {RewardKind::Rule, "rule"},
                                                        {RewardKind::Command, "command"},
                                                        {RewardKind::Remote, "remote"}}};

struct PpoSection : StageSection {
  std::unique_ptr<StageSection> clone() const override { return std::make_unique<PpoSection>(*this); }

  std::string pretrain, pretrain_eval;  // data.pretrain / data.pretrain_eval: the ptx corpus (kind pretrain)
  std::string reward_model;     // checkpoint (RM with fitted bias); unused with reward: rule
  RewardKind reward = RewardKind::Rm;
  std::string reward_rule = "synth_hidden";  // ppo/reward/rules.h, with reward: rule
  std::string reward_command;   // with reward: command, run by /bin/sh -c once per batch
  double reward_timeout_s = 60; // reward: command: the most seconds one batch may take;
                                // reward: remote: one HTTP request (connect, send, answer)
  std::string reward_url;       // reward: remote: http://host:port/path (e.g. rlhf_serve's /get_reward)
  int64_t reward_retries = 2;   // reward: remote: retries of a failed request (connection, 5xx, 429)
  int64_t reward_batch_size = 64;  // reward: remote: the most queries per request
  std::string critic_init;      // default: reward_model
  int64_t ppo_epochs = 2;
  int64_t minibatch_size = 0;   // prompts per optimizer step within an iteration (global); 0 = whole batch
  double clip_eps = 0.2;
  double value_clip = 0.2;
  double vf_coef = 0.5;
  double critic_learning_rate = 0.0;  // 0 = train.learning_rate
  double gamma = 1.0;
  double gae_lambda = 0.95;
  AdvantageKind advantage = AdvantageKind::Gae;  // not gae: no critic (ppo/critic_free.h)
  int64_t samples_per_prompt = 1;  // responses per prompt per iteration (a group; same rank)
  double kl_coef = 0.05;        // β (initial value when adaptive)
  bool adaptive_kl = false;
  double kl_target = 6.0;
  int64_t kl_horizon = 10000;
  KlEstimator kl_estimator = KlEstimator::K1;  // unset with kl_in_loss: k2 (resolved at parse)
  bool kl_in_loss = false;      // true: β·KL (kl_estimator) is a loss term, not a reward penalty
  LossAggregation loss_aggregation = LossAggregation::TokenMean;  // unset with dr_grpo: seq_mean_token_sum_norm
  double ptx_coef = 0.0;        // γ_ptx; InstructGPT used 27.8; 0 = off
  int64_t ptx_batch_size = 8;   // pretraining sequences per optimizer step, global
  int64_t ptx_seq_len = 64;
  int64_t max_new_tokens = 32;
  double temperature = 1.0;
  int64_t top_k = 0;            // refused unless 0 (check_ppo_sampling)
  double top_p = 1.0;           // refused unless 1
  std::string stop_token;       // "" = none; a token text (e.g. "<|im_end|>") that also ends a response
  double no_eos_penalty = 0.0;  // subtracted from the RM score when a response has no EOS
  double score_clip = 0.0;      // 0 = off; clip RM score to ±score_clip
  Precision frozen_dtype = Precision::FP32;  // bf16: reward model + reference in bf16 (ppo/frozen.h)
  bool offload_frozen = false;  // reward model (+ reference) on the CPU between scoring phases
  int64_t log_samples_every = 0;  // 0 = off; every N iterations a few rollouts to run.dir/samples.jsonl
  Engine rollout_engine = Engine::Paged;  // generate.h: the rollout engine, or the static batch
  EngineOptions engine;                   // ppo.max_batch_rows / max_batch_tokens / kv_block_size
};

// ppo_train's stage: its keys, their checks, its plan and models (stage_spec.h).
const StageSpec& ppo_stage();

// The rollouts' sampling: ppo.max_new_tokens, ppo.temperature, full softmax, the engine keys,
// stop/pad ids from the tokenizer.
SamplingConfig ppo_sampling(const PpoSection& pc, const SpecialIds& ids);

// cfg's ppo section (throws for another stage's config).
PpoSection& ppo_section(Config& cfg);
const PpoSection& ppo_section(const Config& cfg);

// PPO differentiates log π(a|s) of the distribution the rollouts were drawn from,
// softmax(logits / temperature): temperature 0 (greedy: no density), top-k and top-p (a truncated
// distribution the log-probs do not describe) are refused, naming the key and the fix.
void check_ppo_sampling(const PpoSection& pc, int64_t vocab_size);

// The experience options of an iteration (β: its kl_coef, updated by the KL controller).
ExperienceOptions experience_options(const PpoSection& pc);

// The update options that stay fixed over the run; ptx: the loaded data.pretrain (read when
// ppo.ptx_coef > 0, which needs more than ppo.ptx_seq_len tokens). Checks that the minibatch splits
// over `world` ranks and micro-batches.
UpdateOptions base_update_options(const Config& cfg, const PretrainData& ptx, int world);

}  // namespace rlhf
