// stage_spec.h — what the common layer needs to know of a stage, and nothing more: its name, its
// own config keys with their checks, how its batch sizes count rows, and the models it holds (for
// --dry-run and the memory check). Each stage defines one StageSpec in <stage>/<stage>_config.cpp
// (sft_stage(), rm_stage(), ppo_stage(), dpo_stage()) and passes it to parse_run_args /
// parse_config; common code reaches it through Config::stage and never names a stage.
#pragma once
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/model/model.h"
#include "common/train/config.h"
#include "common/train/config_schema.h"

namespace rlhf {

// One model a stage builds, as the dry run and the memory check see it.
struct StageModel {
  std::string role;  // "policy", "reward model", "actor", "reference", "critic", "reward"
  ModelConfig cfg;
  bool scalar = false, trainable = false;
  bool lora = false;         // model.lora on a trained model: adapters (+ score head) train
  bool shared = false;       // the reference with LoRA: the policy's base, no weights of its own
  bool frozen_bf16 = false;  // frozen weights in bf16 (StagePlan::frozen_bf16)
  bool offloaded = false;    // StagePlan::offload_frozen: on the device only while scoring
};

// How a stage's batch sizes count rows, and what else sizes its memory (from its config alone).
struct StagePlan {
  // Rows per sample of train.global_batch_size; train.micro_batch_size counts rows (PPO: rollout
  // rows, ppo.samples_per_prompt per prompt). 1 = a sample is a row.
  int64_t rows_per_sample = 1;
  // Samples per optimizer step when an iteration takes several (PPO: ppo.minibatch_size), named by
  // step_key; 0 = train.global_batch_size.
  int64_t step_samples = 0;
  std::string step_key;
  // A micro-batch counts groups of ranked responses (RM, DPO): each forward holds every response
  // of its groups (the largest group of data.train, at least 2).
  bool ranked_groups = false;
  // Tokens generated after each prompt (PPO: ppo.max_new_tokens, named by generated_key): the
  // sequence grows by them and a KV cache is planned.
  int64_t generated_tokens = 0;
  std::string generated_key;
  bool frozen_bf16 = false;     // frozen weights (and a LoRA base) kept in bf16
  bool offload_frozen = false;  // frozen models on the CPU between scoring phases
};

struct StageSpec {
  std::string name;   // "ppo": the executable is <name>_train
  std::string title;  // what it does, for --help
  // The stage's own section, default-constructed; empty: none (SFT).
  std::function<std::unique_ptr<StageSection>()> new_section;
  // Declares the stage's keys, bound into cfg (its section); empty: none.
  std::function<void(Config& cfg, Schema& s)> add_keys;
  // After every key is read: defaults that depend on other keys (`given`: the keys the file and
  // --set named), then the stage's checks that need no data or model. Throws ConfigError naming
  // origin and the keys. Empty: nothing to resolve.
  std::function<void(Config& cfg, const std::set<std::string>& given, const std::string& origin)> resolve;
  // The stage's StagePlan; empty: the default plan (a sample is a row).
  std::function<StagePlan(const Config& cfg)> plan;
  // The models the stage builds; base is init's architecture (or model.* without init). Throws
  // like the trainer when a checkpoint it needs is not set.
  std::function<std::vector<StageModel>(const Config& cfg, const ModelConfig& base)> models;
};

// cfg.stage's plan (the default plan without a hook).
StagePlan stage_plan(const Config& cfg);

}  // namespace rlhf
