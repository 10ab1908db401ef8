// PPO rollout alignment (src/ppo/rollout.cpp): the log-probs and values the PPO step uses line up
// with what generate() sampled, token for token.
//  - response_logprobs(actor, rollout, T) on the response mask equals the log-probs generate()
//    recorded while sampling at temperature T (T = 1 and T = 0.7): same distribution, same tokens.
//  - response_values(critic, rollout)[b, t] equals the critic's value at the last position of the
//    prefix alone (prompt + response tokens before t), recomputed row by row without padding.
#include <gtest/gtest.h>

#include "common/model/generate.h"
#include "common/model/lm_loss.h"
#include "common/dist/dist.h"
#include "ppo/ppo_step.h"
#include "ppo/rollout.h"
#include "support/test_models.h"

namespace rlhf {
namespace {

Rollout sample(CausalLM& actor, double temperature, std::vector<std::vector<int32_t>> prompts) {
  auto [pt, pm] = left_pad(prompts, 0);
  SamplingConfig sc = sampling_config(10, temperature, 0, 1.0, SpecialIds{1, 2, 0});
  sc.eos_check_every = 1;
  return generate_rollout(actor, pt, pm, sc, 19);
}

TEST(RolloutAlignment, ResponseLogprobsEqualTheSampledLogprobs) {
  for (Family fam : {Family::GPT2, Family::Llama}) {
    CausalLM actor = testing::sharp_model(fam, fam == Family::Llama ? 2 : 4, 5);
    actor->eval();
    for (double temp : {1.0, 0.7}) {
      Rollout ro = sample(actor, temp, {{5, 6, 7}, {3, 4, 9, 10, 11}, {12}, {1, 2}});
      ASSERT_GT(ro.N, 0);
      ASSERT_TRUE(ro.sample_logp.defined());
      torch::NoGradGuard ng;
      auto lp = response_logprobs(actor, ro, temp).masked_fill(ro.response_mask.logical_not(), 0);
      const double d = (lp - ro.sample_logp).abs().max().item<double>();
      // Round-off only (generate decodes through the KV cache, this recomputes whole rows):
      // measured 3.1e-5 on these sharp models' log-probs; the bound is test_generate's.
      EXPECT_LT(d, 1e-4) << "family " << family_name(fam) << " temperature " << temp;
      // A different temperature is a different distribution: the check can fail.
      auto other = response_logprobs(actor, ro, temp == 1.0 ? 0.7 : 1.0)
                       .masked_fill(ro.response_mask.logical_not(), 0);
      EXPECT_GT((other - ro.sample_logp).abs().max().item<double>(), 1e-2);
    }
  }
}

// make_experience's old log-probs are the sampler's own at ppo.temperature (0.7 here): at the first
// iteration (actor = the sampling policy) they equal what generate() recorded; the reference (the
// same weights) gives KL 0. A forward at temperature 1 would differ by > 1e-2 (test above).
TEST(RolloutAlignment, OldLogprobsAreTheSamplersAtThePpoTemperature) {
  CausalLM actor = testing::sharp_model(Family::Llama, 2, 5);
  actor->eval();
  Rollout ro = sample(actor, 0.7, {{5, 6, 7}, {3, 4, 9, 10, 11}, {12}, {1, 2}});
  ro.raw_score = torch::tensor({0.5f, -0.5f, 1.0f, 0.0f});
  ScalarModel none{nullptr};
  PpoModels m{actor, actor, none, none};
  ExperienceOptions eo;
  eo.temperature = 0.7;
  eo.advantage = AdvantageKind::Grpo;  // no critic needed
  eo.group = 2;
  make_experience(m, ro, eo, world());
  EXPECT_LT((ro.old_logp - ro.sample_logp).abs().max().item<double>(), 1e-4);
  EXPECT_LT(ro.kl.abs().max().item<double>(), 1e-6);
}

TEST(RolloutAlignment, ValuesAreThoseOfThePrefixAlone) {
  torch::manual_seed(3);
  ScalarModel critic(testing::tiny_config(Family::Llama, 2));
  critic->eval();
  CausalLM actor = testing::sharp_model(Family::Llama, 2, 7);
  const std::vector<std::vector<int32_t>> prompts = {{5, 6, 7}, {3, 4, 9, 10, 11}, {12}};
  Rollout ro = sample(actor, 1.0, prompts);
  torch::NoGradGuard ng;
  auto values = response_values(critic, ro);  // [B, N]
  double worst = 0;
  for (int64_t b = 0; b < ro.batch(); ++b) {
    for (int64_t t = 0; t < ro.N; ++t) {
      if (!ro.response_mask[b][t].item<bool>()) continue;
      // The prefix: the row's real prompt tokens and its response tokens before t.
      std::vector<int64_t> prefix;
      for (int64_t i = 0; i < ro.P + t; ++i)
        if (ro.attention_mask[b][i].item<bool>()) prefix.push_back(ro.tokens[b][i].item<int64_t>());
      auto tok = torch::tensor(prefix, torch::kLong).unsqueeze(0);            // [1, L]
      auto mask = torch::ones_like(tok, torch::kBool);                        // [1, L]
      auto v = critic->forward(tok, positions_from_mask(mask), mask);          // [1, L]
      const double want = v[0][tok.size(1) - 1].item<double>();
      worst = std::max(worst, std::abs(values[b][t].item<double>() - want));
    }
  }
  EXPECT_LT(worst, 1e-5);
}

// A GRPO batch (each prompt 4 times, ragged, rows ending at different steps): the forwards that
// run each prompt once give the full passes' log-probs, values, reward scores and gradients.
TEST(SharedPromptForwards, EqualTheFullPassesAndTheirGradients) {
  for (Family fam : {Family::GPT2, Family::Llama}) {
    SCOPED_TRACE(family_name(fam));
    const int64_t kv = fam == Family::Llama ? 2 : 4;
    CausalLM actor = testing::sharp_model(fam, kv, 8);
    torch::manual_seed(9);
    ScalarModel critic(testing::tiny_config(fam, kv));
    std::vector<std::vector<int32_t>> rows;
    for (const auto& p : std::vector<std::vector<int32_t>>{{5, 6, 7}, {3, 4, 9, 10, 11}, {12}})
      for (int i = 0; i < 4; ++i) rows.push_back(p);
    auto [pt, pm] = left_pad(rows, 0);
    SamplingConfig sc = sampling_config(10, 1.0, 0, 1.0, SpecialIds{1, 2, 0});
    std::vector<uint64_t> seeds;
    for (int i = 0; i < 12; ++i) seeds.push_back(40 + i);
    sc.row_max_new_tokens = {3, 10, 1, 7, 10, 2, 9, 4, 5, 10, 6, 8};  // EOS (id 2) may end some sooner
    Rollout ro = generate_rollout(actor, pt, pm, sc, seeds);
    auto lens = ro.response_mask.sum(1);
    ASSERT_LT(lens.min().item<int64_t>(), lens.max().item<int64_t>()) << "rows all end together";
    actor->train();
    auto full_logp = [&] {
      auto logits = actor->forward(ro.tokens, ro.positions, ro.attention_mask);  // [B, P+N, V]
      return token_logprobs(logits.slice(1, ro.P - 1, ro.P + ro.N - 1), ro.tokens.slice(1, ro.P));
    };
    auto grads = [&](const torch::Tensor& logp) {
      actor->zero_grad();
      (logp * ro.response_mask).sum().backward();
      std::vector<torch::Tensor> g;
      for (auto& p : actor->parameters()) g.push_back(p.grad().clone());
      return g;
    };
    auto want = full_logp(), got = response_logprobs(actor, ro, 1.0);
    auto real = ro.response_mask;
    EXPECT_LT(((got - want).abs() * real).max().item<double>(), 1e-4);
    auto gw = grads(want), gg = grads(got);
    for (size_t i = 0; i < gw.size(); ++i) {
      const double scale = gw[i].abs().max().item<double>() + 1e-6;
      EXPECT_LT((gg[i] - gw[i]).abs().max().item<double>() / scale, 1e-4) << "parameter " << i;
    }
    torch::NoGradGuard ng;
    auto vfull = critic->forward(ro.tokens, ro.positions, ro.attention_mask).slice(1, ro.P - 1, ro.P + ro.N - 1);
    EXPECT_LT(((response_values(critic, ro) - vfull).abs() * real).max().item<double>(), 1e-5);
    EXPECT_LT((score_rollout(critic, ro) - critic->score_last(ro.tokens, ro.attention_mask)).abs().max().item<double>(), 1e-5);
    // The prompts did run once each: the scorer counted 12 response rows and no full rows.
    critic->scored_rows = 0;
    score_rollout(critic, ro);
    EXPECT_EQ(critic->scored_rows, 12);
  }
}

}  // namespace
}  // namespace rlhf
