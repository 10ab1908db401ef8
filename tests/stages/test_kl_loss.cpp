// test_kl_loss.cpp — kl_loss (ppo.kl_in_loss) values and gradients for k1 / k2 / k3, by hand.
#include <cmath>

#include <gtest/gtest.h>

#include "ppo/kl_loss.h"

namespace rlhf {
namespace {

// Two response tokens with x = logp − ref_logp = +ln 2 and −ln 2, and a third, masked token with
// a large x whose value and gradient must not count. β = 0.5, tokens = 2: L = 0.25 · Σ k.
struct Case {
  torch::Tensor logp = torch::tensor({std::log(0.5), std::log(0.25), std::log(0.9)}, torch::kDouble)
                           .view({1, 3}).set_requires_grad(true);
  torch::Tensor ref = torch::tensor({std::log(0.25), std::log(0.5), std::log(0.01)}, torch::kDouble).view({1, 3});
  torch::Tensor mask = torch::tensor({true, true, false}).view({1, 3});
};

void expect_loss_and_grad(KlEstimator e, double loss, double g0, double g1) {
  Case c;
  torch::Tensor l = kl_loss(c.logp, c.ref, c.mask, e, 0.5, 2.0);
  EXPECT_NEAR(l.item<double>(), loss, 1e-12);
  l.backward();
  const torch::Tensor g = c.logp.grad().view({3});
  EXPECT_NEAR(g[0].item<double>(), g0, 1e-12);
  EXPECT_NEAR(g[1].item<double>(), g1, 1e-12);
  EXPECT_EQ(g[2].item<double>(), 0.0);  // masked
}

const double kLn2 = std::log(2.0);

// k1 = x: Σ = ln2 − ln2 = 0; dL/dlogp = 0.25 · 1.
TEST(KlLoss, K1) { expect_loss_and_grad(KlEstimator::K1, 0.0, 0.25, 0.25); }

// k2 = x²/2: Σ = ln2² = 0.480453013918201; L = 0.25 · 0.4804530 = 0.120113253479550;
// dL/dlogp = 0.25 · x = ±0.173286795139986.
TEST(KlLoss, K2) {
  expect_loss_and_grad(KlEstimator::K2, 0.25 * kLn2 * kLn2, 0.25 * kLn2, -0.25 * kLn2);
  EXPECT_NEAR(0.25 * kLn2 * kLn2, 0.120113253479550, 1e-14);
}

// k3 = e^{−x} − 1 + x: x = ln2 -> 0.5 − 1 + 0.693147 = 0.193147; x = −ln2 -> 2 − 1 − 0.693147 =
// 0.306853; Σ = 0.5, L = 0.125. dL/dlogp = 0.25 · (1 − e^{−x}) = 0.25 · 0.5 = 0.125 and
// 0.25 · (1 − 2) = −0.25.
TEST(KlLoss, K3) { expect_loss_and_grad(KlEstimator::K3, 0.125, 0.125, -0.25); }

// kl_penalty's k2 values (the reward-side estimator): x²/2 per token, unmasked.
TEST(KlLoss, K2Penalty) {
  Case c;
  const torch::Tensor k = kl_penalty(c.logp.detach(), c.ref, KlEstimator::K2).view({3});
  EXPECT_NEAR(k[0].item<double>(), 0.5 * kLn2 * kLn2, 1e-12);
  EXPECT_NEAR(k[1].item<double>(), 0.5 * kLn2 * kLn2, 1e-12);
  EXPECT_NEAR(k[2].item<double>(), 0.5 * std::pow(std::log(90.0), 2), 1e-12);
}

TEST(KlLoss, RefusesNonPositiveTokens) {
  Case c;
  EXPECT_THROW(kl_loss(c.logp, c.ref, c.mask, KlEstimator::K1, 0.5, 0.0), std::exception);
}

}  // namespace
}  // namespace rlhf
