// ppo_setup.h — what ppo_train builds before its first iteration: the data (prompts, ptx corpus,
// held-out sets), the four models (actor and reference from init, the frozen reward model, the
// critic; fewer with LoRA, rule/command rewards or a critic-free ppo.advantage), with the checks
// that need the data or the models (ppo_config.h has the rest). Split from ppo_trainer.cpp, which
// runs the iterations.
#pragma once
#include <vector>

#include <torch/torch.h>

#include "common/data/data.h"
#include "common/model/model.h"
#include "common/train/config.h"
#include "common/train/train_common.h"
#include "ppo/ppo_config.h"
#include "ppo/ppo_step.h"

namespace rlhf {

// What the iterations read: prompts, the ptx corpus and its held-out stream, held-out prompts.
struct PpoData {
  PromptData prompts, eval;
  PretrainData ptx, ptx_eval;
  int64_t max_len = 0, max_prompt = 0;
};

// The datasets of cfg (data.train prompts, data.pretrain / pretrain_eval, data.eval), checked
// against the tokenizer of ms; errors name the key.
PpoData load_ppo_data(const Config& cfg, const ModelSetup& ms);

// The four models on dev (PpoModels, ppo_step.h; fewer with LoRA, a rule/command/remote reward
// or a critic-free ppo.advantage); root: this rank logs.
PpoModels load_ppo_models(const Config& cfg, const ModelSetup& ms, const torch::Device& dev, bool root);

// The ids rollouts are framed and stopped with: data.train's framing (for_rows), plus
// ppo.stop_token (e.g. a chat model's end of turn), which must be a token of the tokenizer.
SpecialIds ppo_special_ids(const Config& cfg, const ModelSetup& ms, const DatasetMeta& prompts);

// The SFT checkpoint's model set-up for PPO: sampler checked, dropout off (see ppo_setup.cpp).
ModelSetup ppo_model_setup(const Config& cfg, bool root);

}  // namespace rlhf
