// test_kl_loss.cpp — kl_loss (ppo.kl_in_loss) values and gradients for k1 / k2 / k3, by hand.
#include <cmath>
#include <functional>

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

// What each estimator's gradient optimises, by exact enumeration: a softmax policy π_θ over V = 5
// tokens and a fixed reference (log(π_ref/π) in [−1.4, 1.6]: no clamp binds). The trainer samples
// a ~ π and differentiates k(log π(a) − log π_ref(a)) with the sample held fixed, so the expected
// gradient is Σ_a π(a) · ∇_θ k(a), summed here term by term through kl_loss itself.
struct Softmax {
  torch::Tensor theta = torch::tensor({0.3, -0.9, 0.8, 0.0, 1.1}, torch::kDouble);
  torch::Tensor ref = torch::log_softmax(torch::tensor({1.0, 0.5, -0.7, 0.2, 0.0}, torch::kDouble), 0);
  torch::Tensor grad_of(const std::function<torch::Tensor(const torch::Tensor&)>& f) const {
    torch::Tensor t = theta.clone().set_requires_grad(true);
    return torch::autograd::grad({f(t)}, {t})[0];
  }
  torch::Tensor expected_grad(KlEstimator e) const {
    const torch::Tensor pi = torch::softmax(theta, 0);
    torch::Tensor total = torch::zeros_like(theta);
    const torch::Tensor mask = torch::ones({1, 1}, torch::kBool);
    for (int64_t a = 0; a < theta.size(0); ++a)
      total += pi[a].item<double>() * grad_of([&](const torch::Tensor& t) {
        return kl_loss(torch::log_softmax(t, 0)[a].view({1, 1}), ref[a].view({1, 1}), mask, e, 1.0, 1.0);
      });
    return total;
  }
  // ∇ KL(π ‖ π_ref) and ∇ KL(π_ref ‖ π), by autograd of the exact sums.
  torch::Tensor reverse_kl_grad() const {
    return grad_of([&](const torch::Tensor& t) {
      const torch::Tensor lp = torch::log_softmax(t, 0);
      return (lp.exp() * (lp - ref)).sum();
    });
  }
  torch::Tensor forward_kl_grad() const {
    return grad_of([&](const torch::Tensor& t) { return (ref.exp() * (ref - torch::log_softmax(t, 0))).sum(); });
  }
};

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

// k2 in the loss: its expected gradient is the reverse KL's, exactly (the ppo.kl_in_loss default).
TEST(KlLossExpectedGradient, K2IsTheReverseKlGradient) {
  Softmax s;
  ASSERT_GT(max_abs(s.reverse_kl_grad()), 0.05);  // not a trivial 0 = 0
  EXPECT_LT(max_abs(s.expected_grad(KlEstimator::K2) - s.reverse_kl_grad()), 1e-12);
}

// k1 in the loss: an expected gradient of exactly 0 (E_π[∇ log π] = 0): refused by parse_config.
TEST(KlLossExpectedGradient, K1HasNone) {
  Softmax s;
  EXPECT_LT(max_abs(s.expected_grad(KlEstimator::K1)), 1e-12);
}

// k3 in the loss: the FORWARD KL's gradient (accepted with a warning), not the reverse KL's.
TEST(KlLossExpectedGradient, K3IsTheForwardKlGradient) {
  Softmax s;
  EXPECT_LT(max_abs(s.expected_grad(KlEstimator::K3) - s.forward_kl_grad()), 1e-12);
  EXPECT_GT(max_abs(s.expected_grad(KlEstimator::K3) - s.reverse_kl_grad()), 1e-2);
}

// Weights (ppo.loss_aggregation) replace the 1/tokens normaliser: mask/2 gives the tokens = 2 loss,
// and a weight of 3 on the first token alone triples its term.
TEST(KlLoss, WeightsReplaceTheTokenNormaliser) {
  Case c;
  const double plain = kl_loss(c.logp, c.ref, c.mask, KlEstimator::K2, 0.5, 2.0).item<double>();
  const torch::Tensor half = torch::tensor({0.5, 0.5, 0.5}, torch::kDouble).view({1, 3});
  EXPECT_NEAR(kl_loss(c.logp, c.ref, c.mask, KlEstimator::K2, 0.5, 2.0, half).item<double>(), plain, 1e-15);
  const torch::Tensor first = torch::tensor({3.0, 0.0, 7.0}, torch::kDouble).view({1, 3});  // 7: masked
  EXPECT_NEAR(kl_loss(c.logp, c.ref, c.mask, KlEstimator::K2, 0.5, 2.0, first).item<double>(),
              0.5 * 3.0 * 0.5 * kLn2 * kLn2, 1e-14);
}

TEST(KlLoss, RefusesNonPositiveTokens) {
  Case c;
  EXPECT_THROW(kl_loss(c.logp, c.ref, c.mask, KlEstimator::K1, 0.5, 0.0), std::exception);
}

}  // namespace
}  // namespace rlhf
