// PPO's frozen models cheaper (src/ppo/frozen.h): bf16 weights for the reward model and a separate
// reference (scores / log-probs close to fp32's, half the bytes), the LoRA case refused without
// autocast naming the key, and OnDeviceScope a no-op on the CPU.
#include <gtest/gtest.h>

#include "common/model/lora.h"
#include "common/model/model.h"
#include "ppo/frozen.h"
#include "ppo/ppo_config.h"
#include "support/test_support.h"

namespace rlhf {
namespace {

using testing::error_of;
using testing::tiny_config;

int64_t bytes_of(torch::nn::Module& m) {
  int64_t b = 0;
  for (const auto& p : m.parameters()) b += p.numel() * static_cast<int64_t>(p.element_size());
  return b;
}

TEST(Frozen, Bf16RewardModelAndReferenceScoreLikeFp32WithHalfTheBytes) {
  Config cfg = parse_config(ppo_stage(), "", "<test>");
  ppo_section(cfg).frozen_dtype = Precision::BF16;
  torch::manual_seed(1);
  ScalarModel rm(tiny_config(Family::Llama, 2));
  CausalLM ref(tiny_config(Family::Llama, 2));
  torch::manual_seed(2);
  auto tokens = torch::randint(0, 41, {3, 12}, torch::kLong);
  auto mask = torch::ones({3, 12}, torch::kBool);
  torch::NoGradGuard ng;
  const auto score32 = rm->score_last(tokens, mask);
  const auto logp32 = torch::log_softmax(ref->forward(tokens, {}, {}), -1);
  const int64_t rm_bytes = bytes_of(*rm), ref_bytes = bytes_of(*ref);
  const int64_t n = apply_frozen_dtype(cfg, torch::kCPU, *rm, ref.get(), {});
  int64_t params = 0;
  for (auto* m : std::vector<torch::nn::Module*>{rm.get(), ref.get()})
    for (const auto& p : m->parameters()) {
      params += p.numel();
      EXPECT_EQ(p.scalar_type(), torch::kBFloat16);
    }
  EXPECT_EQ(n, params);
  EXPECT_EQ(bytes_of(*rm) * 2, rm_bytes);
  EXPECT_EQ(bytes_of(*ref) * 2, ref_bytes);
  const auto score16 = rm->score_last(tokens, mask);
  const auto logp16 = torch::log_softmax(ref->forward(tokens, {}, {}), -1);
  EXPECT_EQ(score16.scalar_type(), torch::kFloat);
  EXPECT_EQ(logp16.scalar_type(), torch::kFloat);
  // bf16 keeps 8 bits of mantissa: agreement to a few 1e-2 absolute on these O(1) values
  EXPECT_LT((score16 - score32).abs().max().item<double>(), 5e-2);
  EXPECT_LT((logp16 - logp32).abs().max().item<double>(), 5e-2);
  EXPECT_GT((logp16 - logp32).abs().max().item<double>(), 0.0) << "the cast must change something";
}

TEST(Frozen, LoraBaseInBf16NeedsCudaAutocastAndFp32IsANoOp) {
  Config cfg = parse_config(ppo_stage(), "", "<test>");
  torch::manual_seed(3);
  ScalarModel rm(tiny_config(Family::GPT2));
  CausalLM actor(tiny_config(Family::GPT2));
  LoraInfo info;
  info.opt.rank = 2;
  attach_lora(*actor, info);
  EXPECT_EQ(apply_frozen_dtype(cfg, torch::kCPU, *rm, nullptr, {actor.get()}), 0);  // fp32: nothing
  for (const auto& p : rm->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat);
  ppo_section(cfg).frozen_dtype = Precision::BF16;
  const std::string e = error_of([&] { apply_frozen_dtype(cfg, torch::kCPU, *rm, nullptr, {actor.get()}); });
  EXPECT_NE(e.find("ppo.frozen_dtype: bf16 with model.lora"), std::string::npos) << e;
  EXPECT_NE(e.find("train.precision: bf16"), std::string::npos) << e;
  {
    OnDeviceScope s({rm.get()}, torch::kCPU, true);  // CPU run: stays where it is
    EXPECT_TRUE(rm->parameters()[0].device().is_cpu());
  }
}

}  // namespace
}  // namespace rlhf
