// frozen.cpp — see frozen.h.
#include "ppo/frozen.h"

#include "common/core/check.h"
#include "common/model/lora.h"

namespace rlhf {

int64_t apply_frozen_dtype(const Config& cfg, const torch::Device& dev, torch::nn::Module& reward,
                           torch::nn::Module* reference,
                           const std::vector<torch::nn::Module*>& lora_models) {
  if (ppo_section(cfg).frozen_dtype == Precision::FP32) return 0;
  RLHF_CHECK(lora_models.empty() || (dev.is_cuda() && cfg.train.precision == Precision::BF16),
             "ppo.frozen_dtype: bf16 with model.lora keeps the actor's and critic's frozen base "
             "weights in bf16, next to fp32 adapters; those mixed layers run under bf16 autocast, "
             "which needs train.device: cuda and train.precision: bf16 (this run: {}, {}). Use "
             "ppo.frozen_dtype: fp32 here", dev.str(), kPrecisionNames.name(cfg.train.precision));
  int64_t n = 0;
  auto count = [&n](torch::nn::Module& m) {
    for (const auto& p : m.parameters()) n += p.numel();
  };
  count(reward);
  reward.to(torch::kBFloat16);
  if (reference) {
    count(*reference);
    reference->to(torch::kBFloat16);
  }
  if (lora_models.empty()) return n;
  torch::NoGradGuard ng;
  for (torch::nn::Module* m : lora_models)
    for (auto& p : m->named_parameters()) {
      torch::Tensor t = p.value();
      if (lora_owns(p.key(), t)) continue;  // trained, or stored with the adapters: stays fp32
      n += t.numel();
      t.set_data(t.to(torch::kBFloat16));
    }
  return n;
}

OnDeviceScope::OnDeviceScope(std::vector<torch::nn::Module*> models, const torch::Device& dev,
                             bool on) {
  if (!on || !dev.is_cuda()) return;
  models_ = std::move(models);
  for (torch::nn::Module* m : models_) m->to(dev);
}

OnDeviceScope::~OnDeviceScope() {
  for (torch::nn::Module* m : models_) m->to(torch::kCPU);
}

}  // namespace rlhf
