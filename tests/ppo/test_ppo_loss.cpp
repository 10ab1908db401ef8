// test_ppo_loss.cpp — PPO's loss math (ppo/ppo_loss.h) against hand-computed values. Every expected
// number is derived in the comment next to it.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/core/check.h"
#include "ppo/advantages.h"
#include "ppo/ppo_loss.h"
#include "support/test_tensors.h"

namespace rlhf {
namespace {

using namespace testing;  // support/test_tensors.h: dvec, dmat, bmat, expect_vec, sigmoid, softplus
const auto kD = torch::TensorOptions().dtype(torch::kDouble);

// p = [1/2, 1/4], p_ref = [1/4, 1/2].
// k1 = ln p - ln p_ref = [ln 2, -ln 2]
// k3: ratio = p_ref/p = [1/2, 2]; (ratio - 1) - ln ratio = [-1/2 + ln 2, 1 - ln 2]
//   = [0.193147180..., 0.306852819...]
TEST(PpoLoss, KlEstimators) {
  const torch::Tensor logp = dvec({std::log(0.5), std::log(0.25)}).view({1, 2});
  const torch::Tensor ref = dvec({std::log(0.25), std::log(0.5)}).view({1, 2});
  expect_vec(kl_penalty(logp, ref, KlEstimator::K1), {std::log(2.0), -std::log(2.0)}, 1e-12);
  expect_vec(kl_penalty(logp, ref, KlEstimator::K3), {0.1931471805599453, 0.3068528194400547},
             1e-12);
  expect_vec(kl_penalty(logp, logp, KlEstimator::K3), {0.0, 0.0}, 0.0);
}

// k3 is bounded (as verl): at logp = -30 against ref_logp = 0 the raw value is
// e^30 - 1 - 30 ≈ 1.07e13; the log-ratio clamps to 20 and the result to kK3Max = 10. The other
// direction (logp = 0, ref_logp = -30): e^-20 - 1 + 20 = 19.000000002 -> 10. Inside the bounds
// (log-ratio 2: e^2 - 3 = 4.389056099) nothing changes, and gradients stay finite.
TEST(PpoLoss, K3IsBoundedForFarApartLogProbs) {
  const torch::Tensor logp = dvec({-30.0, 0.0, -2.0}).view({1, 3}).requires_grad_(true);
  const torch::Tensor ref = dvec({0.0, -30.0, 0.0}).view({1, 3});
  const torch::Tensor k3 = kl_penalty(logp, ref, KlEstimator::K3);
  expect_vec(k3, {kK3Max, kK3Max, std::exp(2.0) - 3.0}, 1e-12);
  k3.sum().backward();
  EXPECT_TRUE(torch::isfinite(logp.grad()).all().item<bool>());
}

// kl_coef = 0.5, score = [1, 2, 3].
// row 0: mask [0,1,1,0], kl [0.1,0.2,0.3,0.4] -> [0, -0.1, -0.15 + 1, 0] = [0, -0.1, 0.85, 0]
// row 1: mask [1,1,1,1], kl all 1           -> [-0.5, -0.5, -0.5, -0.5 + 2] = [..., 1.5]
// row 2: mask all 0, kl all 9               -> all 0 (no score either)
TEST(PpoLoss, ComputeRewardsScoreAtLastResponseToken) {
  const torch::Tensor kl = dmat({{0.1, 0.2, 0.3, 0.4}, {1, 1, 1, 1}, {9, 9, 9, 9}});
  const torch::Tensor mask = bmat({{0, 1, 1, 0}, {1, 1, 1, 1}, {0, 0, 0, 0}});
  const torch::Tensor r = compute_rewards(kl, dvec({1.0, 2.0, 3.0}), mask, 0.5);
  expect_vec(r, {0, -0.1, 0.85, 0, -0.5, -0.5, -0.5, 1.5, 0, 0, 0, 0}, 1e-12);
}

// γ = 1, λ = 0.95.
// row 0: mask [1,1,1,0,0], V = [0.5, 1, 2, (9, 9)], r = [0.1, -0.2, 1, (7, 7)] (tail ignored)
//   t=2: δ = 1 + 0 - 2 = -1                          A2 = -1
//   t=1: δ = -0.2 + 2 - 1 = 0.8;  A1 = 0.8 + 0.95·(-1) = -0.15
//   t=0: δ = 0.1 + 1 - 0.5 = 0.6; A0 = 0.6 + 0.95·(-0.15) = 0.4575
//   returns = A + V = [0.9575, 0.85, 1.0, 0, 0]
// row 1: masked prompt head: mask [0,1,1,0,0], V = [5, 1, 1, 3, 3], r = [4, 0.5, 1, 0, 0]
//   t=2: δ = 1 + 0 - 1 = 0,  A2 = 0;  t=1: δ = 0.5 + 1 - 1 = 0.5, A1 = 0.5 + 0.95·0 = 0.5
//   t=0 masked -> 0.  returns = [0, 1.5, 1.0, 0, 0]
// row 2: fully masked -> all 0.
TEST(PpoLoss, GaeMaskedHandComputed) {
  const torch::Tensor V = dmat({{0.5, 1, 2, 9, 9}, {5, 1, 1, 3, 3}, {1, 2, 3, 4, 5}});
  const torch::Tensor R = dmat({{0.1, -0.2, 1, 7, 7}, {4, 0.5, 1, 0, 0}, {1, 1, 1, 1, 1}});
  const torch::Tensor M = bmat({{1, 1, 1, 0, 0}, {0, 1, 1, 0, 0}, {0, 0, 0, 0, 0}});
  GaeResult g = gae(V, R, M, 1.0, 0.95);
  expect_vec(g.advantages, {0.4575, -0.15, -1, 0, 0, 0, 0.5, 0, 0, 0, 0, 0, 0, 0, 0}, 1e-12);
  expect_vec(g.returns, {0.9575, 0.85, 1.0, 0, 0, 0, 1.5, 1.0, 0, 0, 0, 0, 0, 0, 0}, 1e-12);
}

// γ = 0.5, λ = 0.5 (discounting on), single row, all masked in: V = [1, 1], r = [0, 2]
//   t=1: δ = 2 + 0 - 1 = 1, A1 = 1;  t=0: δ = 0 + 0.5·1 - 1 = -0.5, A0 = -0.5 + 0.25·1 = -0.25
TEST(PpoLoss, GaeDiscounted) {
  GaeResult g = gae(dmat({{1, 1}}), dmat({{0, 2}}), bmat({{1, 1}}), 0.5, 0.5);
  expect_vec(g.advantages, {-0.25, 1.0}, 1e-12);
  expect_vec(g.returns, {0.75, 2.0}, 1e-12);
}

// Masked entries: x = [[1, 2, 3, 100], [4, 1000, -50, 0]], mask [[1,1,1,0],[1,0,0,0]].
// In-mask values 1,2,3,4: mean 2.5; unbiased var = (2.25+0.25+0.25+2.25)/3 = 5/3;
// whitened = (x - 2.5)/sqrt(5/3) = [-1.161895, -0.387298, 0.387298, 1.161895]; masked -> 0.
TEST(PpoLoss, MaskedMeanAndWhiten) {
  const torch::Tensor x = dmat({{1, 2, 3, 100}, {4, 1000, -50, 0}});
  const torch::Tensor m = bmat({{1, 1, 1, 0}, {1, 0, 0, 0}});
  EXPECT_NEAR(masked_mean(x, m).item<double>(), 2.5, 1e-12);
  EXPECT_EQ(masked_mean(x, bmat({{0, 0, 0, 0}, {0, 0, 0, 0}})).item<double>(), 0.0);

  const double a = 1.161895003862225, b = 0.3872983346207417;
  expect_vec(masked_whiten(x, m), {-a, -b, b, 0, a, 0, 0, 0}, 1e-6);
  expect_vec(masked_whiten(x, m, /*shift_mean=*/false),
             {-a + 2.5, -b + 2.5, b + 2.5, 0, a + 2.5, 0, 0, 0}, 1e-6);

  const MaskedStats st = masked_stats(x, m);  // sum 10, sum_sq 1+4+9+16 = 30, count 4
  EXPECT_DOUBLE_EQ(st.sum, 10.0);
  EXPECT_DOUBLE_EQ(st.sum_sq, 30.0);
  EXPECT_DOUBLE_EQ(st.count, 4.0);
  EXPECT_NEAR(st.var(), 5.0 / 3.0, 1e-12);

  // "Two ranks" each holding one row: summing their stats gives the global ones.
  const MaskedStats s0 = masked_stats(x.slice(0, 0, 1), m.slice(0, 0, 1));
  const MaskedStats s1 = masked_stats(x.slice(0, 1, 2), m.slice(0, 1, 2));
  const MaskedStats g{s0.sum + s1.sum, s0.sum_sq + s1.sum_sq, s0.count + s1.count};
  expect_vec(masked_whiten_with(x.slice(0, 1, 2), m.slice(0, 1, 2), g.mean(), g.var()),
             {a, 0, 0, 0}, 1e-6);
}

// β = 0.1, target 6, horizon 10000, n_steps = 256 (256/10000 = 0.0256):
//   KL 12:  e = clip(12/6 - 1 = 1)   = +0.2 -> β·(1 + 0.2·0.0256) = 0.1·1.00512 = 0.100512
//   KL 0:   e = clip(-1)             = -0.2 -> 0.1·0.99488 = 0.099488
//   KL 6.6: e = 0.1 (inside)                -> 0.1·1.00256 = 0.100256
//   KL 5.4: e = -0.1 (inside)               -> 0.1·0.99744 = 0.099744
TEST(PpoLoss, KlController) {
  const std::vector<std::pair<double, double>> cases = {
      {12.0, 0.100512}, {0.0, 0.099488}, {6.6, 0.100256}, {5.4, 0.099744}};
  for (auto [kl, want] : cases) {
    KlController c(0.1, true, 6.0, 10000);
    c.update(kl, 256);
    EXPECT_NEAR(c.value, want, 1e-12) << "kl " << kl;
  }
  KlController fixed(0.1, false, 6.0, 10000);  // ppo.adaptive_kl: false
  fixed.update(100.0, 256);
  EXPECT_EQ(fixed.value, 0.1);
  EXPECT_THROW(KlController(0.1, true, 6.0, 0), Error);
}

// ε = 0.2, old_logp = 0 so ρ = exp(logp). Per token, loss = -min(ρA, clip(ρ, 0.8, 1.2)A):
//   A=+1, ρ=1.1 (inside):          min(1.1, 1.1)   -> loss -1.1, not clipped, dloss/dlogp = -ρA = -1.1
//   A=+1, ρ=1.5 (above, binds):    min(1.5, 1.2)   -> loss -1.2, clipped,     grad 0
//   A=-1, ρ=0.5 (below, binds):    min(-0.5, -0.8) -> loss +0.8, clipped,     grad 0
//   A=-1, ρ=1.5 (above, no bind):  min(-1.5, -1.2) -> loss +1.5, not clipped, grad -ρA = 1.5
// approx_kl per token = ½(ln ρ)²: ρ=1.5 -> 0.082200977, ρ=1.1 -> 0.004542015, ρ=0.5 -> 0.240226507
TEST(PpoLoss, PolicyLossFourCases) {
  struct Case { double rho, adv, loss, clip, grad, kl; };
  const std::vector<Case> cases = {{1.1, 1.0, -1.1, 0.0, -1.1, 0.004542015187166374},
                                   {1.5, 1.0, -1.2, 1.0, 0.0, 0.08220097694658271},
                                   {0.5, -1.0, 0.8, 1.0, 0.0, 0.2402265069591007},
                                   {1.5, -1.0, 1.5, 0.0, 1.5, 0.08220097694658271}};
  std::vector<double> logps, advs;
  for (const Case& c : cases) {
    torch::Tensor logp = dvec({std::log(c.rho)}).view({1, 1}).requires_grad_(true);
    PolicyLoss p = policy_loss(logp, torch::zeros({1, 1}, kD), dvec({c.adv}).view({1, 1}),
                               bmat({{1}}), 0.2);
    EXPECT_NEAR(p.loss.item<double>(), c.loss, 1e-12) << "rho " << c.rho << " A " << c.adv;
    EXPECT_EQ(p.clip_frac.item<double>(), c.clip) << "rho " << c.rho << " A " << c.adv;
    EXPECT_NEAR(p.approx_kl.item<double>(), c.kl, 1e-12);
    p.loss.backward();
    EXPECT_NEAR(logp.grad().item<double>(), c.grad, 1e-12) << "rho " << c.rho << " A " << c.adv;
    logps.push_back(std::log(c.rho));
    advs.push_back(c.adv);
  }
  // All four in one row plus a masked-out fifth token (huge ratio, must not count):
  // loss = (-1.1 - 1.2 + 0.8 + 1.5)/4 = 0; clip_frac = 2/4 = 0.5.
  logps.push_back(5.0);
  advs.push_back(10.0);
  PolicyLoss all = policy_loss(dvec(logps).view({1, 5}), torch::zeros({1, 5}, kD),
                               dvec(advs).view({1, 5}), bmat({{1, 1, 1, 1, 0}}), 0.2);
  EXPECT_NEAR(all.loss.item<double>(), 0.0, 1e-12);
  EXPECT_NEAR(all.clip_frac.item<double>(), 0.5, 1e-12);
}

// value_clip = 0.2, old = 1. Per token ½·max((v-R)², (v_c-R)²), v_c = 1 + clip(v - 1, ±0.2):
//   v=1.5, R=1.5: (0)² vs (1.2-1.5)² = 0.09 -> clipped branch, 0.045, grad 0
//   v=1.5, R=0:   2.25 vs 1.44             -> unclipped, 1.125, grad (v-R) = 1.5
//   v=1.1, R=2:   inside, 0.81 both        -> 0.405, grad (v-R) = -0.9
// mean over 3 = (0.045 + 1.125 + 0.405)/3 = 0.525, clip_frac = 1/3;
// gradients of the mean are the per-token gradients / 3.
TEST(PpoLoss, ValueLossClipping) {
  torch::Tensor v = dvec({1.5, 1.5, 1.1, 50.0}).view({1, 4}).requires_grad_(true);
  const torch::Tensor old_v = dvec({1.0, 1.0, 1.0, 0.0}).view({1, 4});
  const torch::Tensor R = dvec({1.5, 0.0, 2.0, -50.0}).view({1, 4});
  ValueLoss l = value_loss(v, old_v, R, bmat({{1, 1, 1, 0}}), 0.2);
  EXPECT_NEAR(l.loss.item<double>(), 0.525, 1e-12);
  EXPECT_NEAR(l.clip_frac.item<double>(), 1.0 / 3.0, 1e-12);
  l.loss.backward();
  expect_vec(v.grad(), {0.0, 1.5 / 3, -0.9 / 3, 0.0}, 1e-12);
  // value_clip <= 0: plain ½ MSE = ½·(0 + 2.25 + 0.81)/3 = 0.51
  ValueLoss plain = value_loss(v, old_v, R, bmat({{1, 1, 1, 0}}), 0.0);
  EXPECT_NEAR(plain.loss.item<double>(), 0.51, 1e-12);
  EXPECT_EQ(plain.clip_frac.item<double>(), 0.0);
}

}  // namespace
}  // namespace rlhf
