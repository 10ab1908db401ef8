// frozen.h — PPO's frozen models made cheaper (issue 16): the reward model and the reference
// policy train nothing, so they need neither fp32 weights nor a place on the GPU between uses.
//
// ppo.frozen_dtype: bf16 — the frozen weights are kept in bf16 (half the bytes):
//   - the reward model and a separate reference policy: the whole module (its outputs stay
//     float32: logits and scores are cast up, model.h);
//   - with model.lora, the reference is the actor's own base: then the frozen base weights of the
//     actor and of the critic go to bf16 while the adapters and the score head keep fp32 master
//     weights. Their mixed-dtype layers need bf16 autocast: train.device cuda with
//     train.precision bf16, else an error naming the key.
// ppo.offload_frozen: true — the reward model (and a separate reference) wait in CPU memory and
//   come to the device only for the scoring phase of an iteration and for the held-out
//   evaluation (OnDeviceScope). With LoRA the reference is the actor and stays.
#pragma once
#include <vector>

#include <torch/torch.h>

#include "common/train/config.h"
#include "ppo/ppo_config.h"

namespace rlhf {

// Applies ppo.frozen_dtype to the models as loaded (before they move to `dev`). `reference` is
// null when it is the actor's base (LoRA); `lora_models` are the actor and critic then.
// Returns how many parameters were converted. Throws naming ppo.frozen_dtype (see above).
int64_t apply_frozen_dtype(const Config& cfg, const torch::Device& dev, torch::nn::Module& reward,
                           torch::nn::Module* reference,
                           const std::vector<torch::nn::Module*>& lora_models);

// Moves `models` to `dev` for the scope and back to the CPU at its end (exceptions included);
// nothing when `on` is false or `dev` is the CPU.
class OnDeviceScope {
 public:
  OnDeviceScope(std::vector<torch::nn::Module*> models, const torch::Device& dev, bool on);
  ~OnDeviceScope();
  OnDeviceScope(const OnDeviceScope&) = delete;
  OnDeviceScope& operator=(const OnDeviceScope&) = delete;

 private:
  std::vector<torch::nn::Module*> models_;
};

}  // namespace rlhf
