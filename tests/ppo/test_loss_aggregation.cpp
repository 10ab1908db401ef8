// ppo.loss_aggregation (src/ppo/ppo_loss.h: loss_weights, policy_loss / value_loss weights) and
// the policy log-ratio clamp, against hand-computed values.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/core/check.h"
#include "ppo/ppo_loss.h"
#include "support/test_support.h"

namespace rlhf {
namespace {

const auto kD = torch::TensorOptions().dtype(torch::kDouble);

// Two responses: row 0 has 1 token, row 1 has 3 (and a masked fourth position). logp = old_logp
// (ratio 1, nothing clipped), so the per-token loss is −A and dL/dlogp = −A·w:
//   A row 0 = [2, (9), (9), (9)] -> ℓ = [−2];   A row 1 = [1, 1, 1, (9)] -> ℓ = [−1, −1, −1]
//   token_mean               (−2 − 1 − 1 − 1) / 4             = −1.25   w = 1/4 everywhere
//   seq_mean_token_mean      (−2/1 + (−3)/3) / 2              = −1.5    w = 1/2 (row 0), 1/6 (row 1)
//   seq_mean_token_sum_norm  (−2 + (−3)) / (2 rows · 4 budget) = −0.625  w = 1/8
struct TwoRows {
  torch::Tensor mask = torch::tensor({1, 0, 0, 0, 1, 1, 1, 0}, kD).view({2, 4}).to(torch::kBool);
  torch::Tensor adv = torch::tensor({2, 9, 9, 9, 1, 1, 1, 9}, kD).view({2, 4});
  torch::Tensor old = torch::full({2, 4}, -1.0, kD);
};

void expect_aggregation(LossAggregation agg, double loss, double w0, double w1) {
  TwoRows r;
  torch::Tensor logp = r.old.clone().set_requires_grad(true);
  const torch::Tensor w = loss_weights(r.mask, agg, 4.0, 2.0, 4.0);
  PolicyLoss pl = policy_loss(logp, r.old, r.adv, r.mask, 0.2, 4.0, w.to(torch::kDouble));
  EXPECT_NEAR(pl.loss.item<double>(), loss, 1e-7) << kLossAggregationNames.name(agg);
  EXPECT_EQ(pl.clip_frac.item<double>(), 0.0);
  pl.loss.backward();
  const torch::Tensor g = logp.grad();
  EXPECT_NEAR(g[0][0].item<double>(), -2 * w0, 1e-7);
  EXPECT_NEAR(g[1][0].item<double>(), -1 * w1, 1e-7);
  EXPECT_NEAR(g[1][2].item<double>(), -1 * w1, 1e-7);
  EXPECT_EQ(g[0][1].item<double>(), 0.0);  // masked
  EXPECT_EQ(g[1][3].item<double>(), 0.0);
}

TEST(LossAggregation, TokenMean) { expect_aggregation(LossAggregation::TokenMean, -1.25, 0.25, 0.25); }
TEST(LossAggregation, SeqMeanTokenMean) {
  expect_aggregation(LossAggregation::SeqMeanTokenMean, -1.5, 0.5, 1.0 / 6.0);
}
TEST(LossAggregation, SeqMeanTokenSumNorm) {
  expect_aggregation(LossAggregation::SeqMeanTokenSumNorm, -0.625, 0.125, 0.125);
}

// Micro-batches of one row each, weighted with the whole minibatch's counts, add up to the whole
// batch's loss; token_mean weights equal today's normaliser path (no weights).
TEST(LossAggregation, MicroBatchSharesAddUpAndTokenMeanIsTheNormaliser) {
  TwoRows r;
  for (LossAggregation agg : {LossAggregation::TokenMean, LossAggregation::SeqMeanTokenMean,
                              LossAggregation::SeqMeanTokenSumNorm}) {
    const torch::Tensor whole = loss_weights(r.mask, agg, 4.0, 2.0, 4.0);
    double sum = 0;
    for (int64_t b = 0; b < 2; ++b) {
      const torch::Tensor m = r.mask.narrow(0, b, 1);
      sum += policy_loss(r.old.narrow(0, b, 1), r.old.narrow(0, b, 1), r.adv.narrow(0, b, 1), m, 0.2, 4.0,
                         loss_weights(m, agg, 4.0, 2.0, 4.0).to(torch::kDouble))
                 .loss.item<double>();
    }
    EXPECT_NEAR(sum, policy_loss(r.old, r.old, r.adv, r.mask, 0.2, 4.0, whole.to(torch::kDouble)).loss.item<double>(),
                1e-7);
  }
  EXPECT_NEAR(policy_loss(r.old, r.old, r.adv, r.mask, 0.2, 4.0).loss.item<double>(), -1.25, 1e-12);
  EXPECT_NE(testing::error_of([&] { loss_weights(r.mask, LossAggregation::SeqMeanTokenSumNorm, 4, 2, 0); })
                .find("needs a horizon"), std::string::npos);
}

// The value loss takes the same weights: ½(v − R)² with v − R = 1 on every token ->
// seq_mean_token_sum_norm: ½ · 4 tokens / 8 = 0.25 (token_mean: ½).
TEST(LossAggregation, ValueLossUsesTheWeights) {
  TwoRows r;
  const torch::Tensor v = torch::ones({2, 4}, kD), R = torch::zeros({2, 4}, kD);
  const torch::Tensor w = loss_weights(r.mask, LossAggregation::SeqMeanTokenSumNorm, 4, 2, 4).to(torch::kDouble);
  EXPECT_NEAR(value_loss(v, v, R, r.mask, 0.2, 4.0, w).loss.item<double>(), 0.25, 1e-12);
  EXPECT_NEAR(value_loss(v, v, R, r.mask, 0.2, 4.0).loss.item<double>(), 0.5, 1e-12);
}

// The log-ratio is clamped to ±20 before exp (as verl): a token whose log-prob rose by 30 nats
// with A = −1 costs e^20 (finite, no gradient), not e^30; one that fell by 30 with A = +1 has the
// ratio e^−20 (min(ρA, 0.8A) = ρA): loss −e^−20, not −e^−30.
TEST(PpoLoss, LogRatioIsClampedBeforeExp) {
  torch::Tensor logp = torch::tensor({30.0}, kD).view({1, 1}).set_requires_grad(true);
  const torch::Tensor zero = torch::zeros({1, 1}, kD), mask = torch::ones({1, 1}, torch::kBool);
  PolicyLoss up = policy_loss(logp, zero, torch::full({1, 1}, -1.0, kD), mask, 0.2);
  EXPECT_NEAR(up.loss.item<double>() / std::exp(20.0), 1.0, 1e-12);
  up.loss.backward();
  EXPECT_EQ(logp.grad().item<double>(), 0.0);
  EXPECT_NEAR(up.approx_kl.item<double>(), 200.0, 1e-9);  // ½ · 20²
  PolicyLoss down = policy_loss(-logp.detach(), zero, torch::ones({1, 1}, kD), mask, 0.2);
  EXPECT_NEAR(down.loss.item<double>() / -std::exp(-20.0), 1.0, 1e-12);
}

}  // namespace
}  // namespace rlhf
