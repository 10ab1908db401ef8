// ppo_setup.h — what ppo_train builds before its first iteration: the data (prompts, ptx corpus,
// held-out sets), the four models (actor and reference from init, the frozen reward model, the
// critic; fewer with LoRA, rule/command rewards or a critic-free ppo.advantage) and the update
// options that stay fixed over the run. Split from ppo_trainer.cpp, which runs the iterations.
#pragma once
#include <vector>

#include <torch/torch.h>

#include "common/data/data.h"
#include "common/model/model.h"
#include "common/train/config.h"
#include "common/train/train_common.h"
#include "ppo/ppo_loss.h"
#include "ppo/ppo_step.h"

namespace rlhf {

// What the iterations read: prompts, the ptx corpus and its held-out stream, held-out prompts.
struct PpoData {
  PromptData prompts, eval;
  PretrainData ptx, ptx_eval;
  int64_t max_len = 0, max_prompt = 0;
};

// load_ppo_models' result: the reference is the actor itself with LoRA (its adapters switched off
// for reference log-probs); reward is empty with ppo.reward: rule / command, critic without GAE.
struct PpoNets {
  CausalLM actor{nullptr}, reference{nullptr};
  ScalarModel reward{nullptr}, critic{nullptr};
  PpoModels view() { return {actor, reference, reward, critic}; }
  // The models that only score: the reward model, and the reference unless it is the actor's base.
  std::vector<torch::nn::Module*> frozen() {
    std::vector<torch::nn::Module*> f;
    if (!reward.is_empty()) f.push_back(reward.get());  // none with ppo.reward: rule
    if (reference.ptr() != actor.ptr()) f.push_back(reference.get());
    return f;
  }
  std::vector<torch::nn::Module*> lora_models() {
    if (critic.is_empty()) return {actor.get()};
    return {actor.get(), critic.get()};
  }
};

// ppo.kl_estimator -> ppo_loss.h's estimator.
KlEstimator kl_estimator_of(KlEstimatorKind k);

// The datasets of cfg (data.train prompts, data.pretrain / pretrain_eval, data.eval), checked
// against the tokenizer of ms; errors name the key.
PpoData load_ppo_data(const Config& cfg, const ModelSetup& ms);

// The four models on dev (see PpoNets); root: this rank logs.
PpoNets load_ppo_models(const Config& cfg, const ModelSetup& ms, const torch::Device& dev, bool root);

// The per-iteration update options that do not change between iterations.
UpdateOptions base_update_options(const Config& cfg, const PpoData& d, int world);

// The SFT checkpoint's model set-up for PPO: sampler checked, dropout off (see ppo_setup.cpp).
ModelSetup ppo_model_setup(const Config& cfg, bool root);

}  // namespace rlhf
