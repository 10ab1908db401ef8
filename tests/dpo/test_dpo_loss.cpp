// test_dpo.cpp — DPO (src/dpo/dpo_loss.h), the shared pair enumeration
// (src/common/data/ranked_pairs.h) and the sequence log-probs (src/dpo/preference_batch.h)
// against hand-computed values. Every expected number is derived in the comment next to it.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/core/check.h"
#include "common/data/ranked_pairs.h"
#include "common/model/model.h"
#include "common/train/train_common.h"
#include "dpo/dpo_loss.h"
#include "dpo/preference_batch.h"
#include "support/test_support.h"
#include "support/test_tensors.h"

namespace rlhf {
namespace {

using testing::dvec;
using testing::expect_vec;
using testing::sigmoid;
using testing::softplus;
constexpr double kTol = 1e-12;

DpoOptions opts(double beta, DpoLossKind kind = DpoLossKind::Sigmoid, double eps = 0.0,
                PairNormalizer n = PairNormalizer::Paper, bool ipo_average = false) {
  DpoOptions o;
  o.ipo_average = ipo_average;
  o.beta = beta;
  o.loss = kind;
  o.label_smoothing = eps;
  o.normalizer = n;
  return o;
}

// The group used below: K = 3, ranks [0, 1, 2], β = 0.5,
//   log π     = [-2, -3, -5],  log π_ref = [-3, -3, -3]
//   log-ratio = [ 1,  0, -2],  implicit rewards r = β·ratio = [0.5, 0, -1]
// pairs (w, l): (0,1) h = 0.5;  (0,2) h = 1.5;  (1,2) h = 1.0;   C(3,2) = 3, weight 1/3 each.
const std::vector<double> kPolicy = {-2.0, -3.0, -5.0}, kRef = {-3.0, -3.0, -3.0};

// sigmoid, ε = 0: L = (softplus(−0.5) + softplus(−1.5) + softplus(−1)) / 3
//   = (0.474076984 + 0.201413277 + 0.313261688) / 3 = 0.329583983
// dL/dh = −σ(−h)/3 per pair; dh/dlogπ_w = β, dh/dlogπ_l = −β:
//   ∂/∂logπ0 = β(−σ(−0.5) − σ(−1.5))/3, ∂/∂logπ1 = β(σ(−0.5) − σ(−1))/3, ∂/∂logπ2 = β(σ(−1.5) + σ(−1))/3
// Metrics: 3 of 3 pairs with h > 0; Σh = 3; Σ r(w) = 0.5 + 0.5 + 0 = 1; Σ r(l) = 0 − 1 − 1 = −2;
//   Σ logπ(w) = −2 − 2 − 3 = −7; Σ logπ(l) = −3 − 5 − 5 = −13.
TEST(DpoLoss, K3SigmoidValueGradientAndMetrics) {
  torch::Tensor pol = dvec(kPolicy).requires_grad_(true);
  torch::Tensor ref = dvec(kRef).requires_grad_(true);
  DpoLoss l = dpo_loss(pol, ref, {0, 3}, {0, 1, 2}, opts(0.5));
  EXPECT_NEAR(l.loss.item<double>(), (softplus(-0.5) + softplus(-1.5) + softplus(-1.0)) / 3, 1e-12);
  EXPECT_NEAR(l.loss.item<double>(), 0.329583983, 1e-8);
  l.loss.backward();
  const double b = 0.5;
  expect_vec(pol.grad(), {b * (-sigmoid(-0.5) - sigmoid(-1.5)) / 3, b * (sigmoid(-0.5) - sigmoid(-1.0)) / 3,
                          b * (sigmoid(-1.5) + sigmoid(-1.0)) / 3}, kTol);
  EXPECT_FALSE(ref.grad().defined() && ref.grad().abs().sum().item<double>() != 0.0)
      << "the reference log-probs must get no gradient";
  EXPECT_EQ(l.pairs, 3);
  EXPECT_EQ(l.groups, 1);
  EXPECT_EQ(l.ties, 0);
  EXPECT_EQ(l.correct, 3);
  EXPECT_NEAR(l.margin_sum, 3.0, 1e-12);
  EXPECT_NEAR(l.chosen_reward_sum, 1.0, 1e-12);
  EXPECT_NEAR(l.rejected_reward_sum, -2.0, 1e-12);
  EXPECT_NEAR(l.chosen_logp_sum, -7.0, 1e-12);
  EXPECT_NEAR(l.rejected_logp_sum, -13.0, 1e-12);
}

// Label smoothing ε = 0.2: ℓ = 0.8·softplus(−h) + 0.2·softplus(h); dℓ/dh = −0.8σ(−h) + 0.2σ(h).
// ε = 0.5 makes ℓ even in h: swapping chosen and rejected leaves the loss unchanged.
TEST(DpoLoss, LabelSmoothing) {
  torch::Tensor pol = dvec(kPolicy).requires_grad_(true);
  DpoLoss l = dpo_loss(pol, dvec(kRef), {0, 3}, {0, 1, 2}, opts(0.5, DpoLossKind::Sigmoid, 0.2));
  auto ls = [](double h) { return 0.8 * softplus(-h) + 0.2 * softplus(h); };
  auto dls = [](double h) { return -0.8 * sigmoid(-h) + 0.2 * sigmoid(h); };
  EXPECT_NEAR(l.loss.item<double>(), (ls(0.5) + ls(1.5) + ls(1.0)) / 3, 1e-12);
  l.loss.backward();
  const double b = 0.5;
  expect_vec(pol.grad(), {b * (dls(0.5) + dls(1.5)) / 3, b * (-dls(0.5) + dls(1.0)) / 3,
                          b * (-dls(1.5) - dls(1.0)) / 3}, kTol);
  const double fwd = dpo_loss(dvec(kPolicy), dvec(kRef), {0, 3}, {0, 1, 2}, opts(0.5, DpoLossKind::Sigmoid, 0.5))
                         .loss.item<double>();
  const double rev = dpo_loss(dvec(kPolicy), dvec(kRef), {0, 3}, {2, 1, 0}, opts(0.5, DpoLossKind::Sigmoid, 0.5))
                         .loss.item<double>();
  EXPECT_NEAR(fwd, rev, 1e-12);
  EXPECT_GT(std::abs(fwd - l.loss.item<double>()), 1e-3);  // ε matters
}

// IPO, β = 0.5: h/β = [1, 3, 2] for pairs (0,1), (0,2), (1,2); target 1/(2β) = 1.
//   ℓ = (1−1)², (3−1)², (2−1)² = 0, 4, 1;  L = 5/3.
//   dℓ/dh = 2(h/β − 1/(2β))/β = 4(h/β − 1) = 0, 8, 4;  ×β for logπ_w, ×(−β) for logπ_l, /3:
//   ∂/∂logπ0 = 0.5·(0 + 8)/3 = 4/3;  ∂/∂logπ1 = 0.5·(−0 + 4)/3 = 2/3;  ∂/∂logπ2 = 0.5·(−8 − 4)/3 = −2.
// Label smoothing is ignored by IPO.
TEST(DpoLoss, Ipo) {
  torch::Tensor pol = dvec(kPolicy).requires_grad_(true);
  DpoLoss l = dpo_loss(pol, dvec(kRef), {0, 3}, {0, 1, 2}, opts(0.5, DpoLossKind::Ipo, 0.3));
  EXPECT_NEAR(l.loss.item<double>(), 5.0 / 3.0, 1e-12);
  l.loss.backward();
  expect_vec(pol.grad(), {4.0 / 3.0, 2.0 / 3.0, -2.0}, kTol);
}

// IPO with dpo.ipo_average (per-token means, TRL's form), the same group with response lengths
// [1, 2, 4]: per-token log-ratios [1/1, 0/2, −2/4] = [1, 0, −0.5], rewards β·that = [0.5, 0, −0.25];
//   h = 0.5 (0,1), 0.75 (0,2), 0.25 (1,2);  h/β = 1, 1.5, 0.5;  ℓ = 0, 0.25, 0.25;  L = 0.5/3 = 1/6.
//   dℓ/dh = 4(h/β − 1) = 0, 2, −2;  dh/dlogπ_w = β/len_w, dh/dlogπ_l = −β/len_l:
//   ∂/∂logπ0 = (0 + 2·0.5/1)/3 = 1/3;  ∂/∂logπ1 = (0·(−0.25) + (−2)·0.25)/3 = −1/6;
//   ∂/∂logπ2 = (2·(−0.125) + (−2)·(−0.125))/3 = 0.  Σ h = 1.5.  (Sums instead give 5/3: above.)
TEST(DpoLoss, IpoAverageDividesEachLogRatioByItsLength) {
  torch::Tensor pol = dvec(kPolicy).requires_grad_(true);
  const torch::Tensor len = dvec({1, 2, 4});
  DpoLoss l = dpo_loss(pol, dvec(kRef), {0, 3}, {0, 1, 2},
                       opts(0.5, DpoLossKind::Ipo, 0, PairNormalizer::Paper, true), len);
  EXPECT_NEAR(l.loss.item<double>(), 1.0 / 6.0, 1e-12);
  EXPECT_NEAR(l.margin_sum, 1.5, 1e-12);
  l.loss.backward();
  expect_vec(pol.grad(), {1.0 / 3.0, -1.0 / 6.0, 0.0}, kTol);
  // Without lengths the per-token form cannot be computed: a clear error, not sums.
  EXPECT_NE(testing::error_of([&] {
              dpo_loss(dvec(kPolicy), dvec(kRef), {0, 3}, {0, 1, 2},
                       opts(0.5, DpoLossKind::Ipo, 0, PairNormalizer::Paper, true));
            }).find("dpo.ipo_average needs the responses' lengths"), std::string::npos);
  // Sigmoid ignores the lengths (its log-probs are sums, as the DPO paper's).
  EXPECT_NEAR(dpo_loss(dvec(kPolicy), dvec(kRef), {0, 3}, {0, 1, 2}, opts(0.5), len).loss.item<double>(),
              0.329583983, 1e-8);
}

// Ties: ranks [0, 1, 1] → pairs (0,1) h = 0.5 and (0,2) h = 1.5; the pair {1,2} is tied (skipped).
//   paper:        L = (softplus(−0.5) + softplus(−1.5)) / C(3,2) = / 3
//   strict_pairs: L = (softplus(−0.5) + softplus(−1.5)) / 2
// A second group of K = 2 all tied adds no pair and no group, one more tie.
TEST(DpoLoss, TiesSkippedAndPairNormalizer) {
  const std::vector<double> pol = {-2.0, -3.0, -5.0, -1.0, -9.0}, ref = {-3.0, -3.0, -3.0, -2.0, -2.0};
  const std::vector<int64_t> off = {0, 3, 5};
  const std::vector<int32_t> ranks = {0, 1, 1, 4, 4};
  const double s = softplus(-0.5) + softplus(-1.5);
  DpoLoss paper = dpo_loss(dvec(pol), dvec(ref), off, ranks, opts(0.5));
  DpoLoss strict = dpo_loss(dvec(pol), dvec(ref), off, ranks, opts(0.5, DpoLossKind::Sigmoid, 0, PairNormalizer::StrictPairs));
  EXPECT_NEAR(paper.loss.item<double>(), s / 3, 1e-12);
  EXPECT_NEAR(strict.loss.item<double>(), s / 2, 1e-12);
  for (const DpoLoss* l : {&paper, &strict}) {
    EXPECT_EQ(l->pairs, 2);
    EXPECT_EQ(l->ties, 2);
    EXPECT_EQ(l->groups, 1);
  }
}

// Two groups, the loss is the mean of the group losses:
//   group A = the K = 3 group above: L_A = 0.329583983...
//   group B, K = 2, ranks [1, 0] (the second is better): logπ = [-1, -1], logπ_ref = [-1, -2]
//     → r = β·[0, 1] = [0, 0.5]; pair (w = 1, l = 0): h = 0.5 − 0 = 0.5; L_B = softplus(−0.5)
//   loss = (L_A + L_B) / 2
TEST(DpoLoss, MeanOverGroups) {
  DpoLoss l = dpo_loss(dvec({-2, -3, -5, -1, -1}), dvec({-3, -3, -3, -1, -2}), {0, 3, 5}, {0, 1, 2, 1, 0}, opts(0.5));
  const double la = (softplus(-0.5) + softplus(-1.5) + softplus(-1.0)) / 3, lb = softplus(-0.5);
  EXPECT_NEAR(l.loss.item<double>(), (la + lb) / 2, 1e-12);
  EXPECT_EQ(l.groups, 2);
  EXPECT_EQ(l.pairs, 4);
}

// Reference = policy: every h = 0, so ℓ = −log σ(0) = ln 2 for every pair whatever ε (−(1−ε)ln½ −
// ε ln½ = ln 2) and the loss is ln 2; no pair has h > 0; margins and rewards are 0.
TEST(DpoLoss, ReferenceEqualsPolicyGivesLog2) {
  const torch::Tensor lp = dvec({-4.0, -7.5, -1.25, -3.0, -2.0});
  for (double eps : {0.0, 0.1}) {
    DpoLoss l = dpo_loss(lp, lp.clone(), {0, 3, 5}, {0, 1, 2, 0, 1}, opts(0.1, DpoLossKind::Sigmoid, eps));
    EXPECT_NEAR(l.loss.item<double>(), std::log(2.0), 1e-12) << "eps " << eps;
    EXPECT_EQ(l.correct, 0);
    EXPECT_EQ(l.margin_sum, 0.0);
    EXPECT_EQ(l.chosen_reward_sum, 0.0);
  }
}

TEST(DpoLoss, NoPairsAndBadInputs) {
  torch::Tensor pol = dvec({-1.0, -2.0}).requires_grad_(true);
  DpoLoss none = dpo_loss(pol, dvec({-1.0, -1.0}), {0, 2}, {3, 3}, opts(0.1));
  EXPECT_EQ(none.pairs, 0);
  EXPECT_EQ(none.ties, 1);
  EXPECT_EQ(none.loss.item<double>(), 0.0);
  none.loss.backward();  // still attached
  EXPECT_THROW(dpo_loss(pol, dvec({-1.0}), {0, 2}, {0, 1}, opts(0.1)), Error);        // sizes
  EXPECT_THROW(dpo_loss(pol, dvec({-1.0, -1.0}), {0, 1}, {0, 1}, opts(0.1)), Error);  // offsets
  EXPECT_THROW(dpo_loss(pol, dvec({-1.0, -1.0}), {0, 2}, {0}, opts(0.1)), Error);     // ranks
  EXPECT_THROW(dpo_loss(pol, dvec({-1.0, -1.0}), {0, 2}, {0, 1}, opts(0.0)), Error);  // β
}

// ranked_pairs, K = 4 with ranks [1, 0, 1, 2] (response 1 best; 0 and 2 tied):
//   ordered pairs in (i, j) order: (0,3), (1,0), (1,2), (1,3), (2,3); the tie {0,2}
//   paper weight 1/C(4,2) = 1/6, strict 1/5; one group.
TEST(DpoRankedPairs, OrderTiesWeights) {
  const RankedPairs p = ranked_pairs({0, 4}, {1, 0, 1, 2}, PairNormalizer::Paper);
  EXPECT_EQ(p.better, (std::vector<int64_t>{0, 1, 1, 1, 2}));
  EXPECT_EQ(p.worse, (std::vector<int64_t>{3, 0, 2, 3, 3}));
  EXPECT_EQ(p.ties, 1);
  EXPECT_EQ(p.groups, 1);
  for (double w : p.weight) EXPECT_DOUBLE_EQ(w, 1.0 / 6.0);
  const RankedPairs s = ranked_pairs({0, 4}, {1, 0, 1, 2}, PairNormalizer::StrictPairs);
  for (double w : s.weight) EXPECT_DOUBLE_EQ(w, 1.0 / 5.0);
}

// sequence_logprobs sums log π over each row's target tokens: over a batch, the sum equals
// −(the SFT loss's summed NLL), and a row's value does not depend on the other rows (padding).
TEST(DpoSequenceLogprobs, MatchesLmLossAndIsPerRow) {
  torch::manual_seed(3);
  CausalLM m(testing::tiny_config(Family::GPT2));
  m->eval();
  const std::vector<int32_t> p0 = {5, 6, 7}, r0 = {8, 9}, p1 = {10}, r1 = {11, 12, 13, 14};
  const std::vector<PromptResponse> rows = {{p0.data(), 3, r0.data(), 2}, {p1.data(), 1, r1.data(), 4}};
  SpecialIds ids;
  ids.bos = 1;
  ids.eos = 2;
  const SeqBatch b = build_seq_batch(rows, ids, 64);
  const torch::Tensor lp = sequence_logprobs(m, b, torch::kCPU);  // [2]
  ASSERT_EQ(lp.size(0), 2);
  const LmLoss l = batch_lm_loss(m, b, torch::kCPU);
  EXPECT_NEAR(lp.sum().item<double>(), -l.sum_nll.item<double>(), 1e-4);
  const SeqBatch b1 = build_seq_batch({rows[1]}, ids, 64);
  EXPECT_NEAR(sequence_logprobs(m, b1, torch::kCPU)[0].item<double>(), lp[1].item<double>(), 1e-5);
  EXPECT_LT(lp.max().item<double>(), 0.0);
  // The lengths dpo.ipo_average divides by: the response tokens + EOS, 2 + 1 and 4 + 1.
  expect_vec(target_counts(b), {3, 5}, kTol);
}

// train.packing: the same rows packed padding-free give the same per-row log-prob sums, target
// counts and gradients (GQA Llama, ragged rows).
TEST(DpoSequenceLogprobs, PackedRowsEqualPaddedRows) {
  torch::manual_seed(4);
  CausalLM m(testing::tiny_config(Family::Llama, 2));
  m->train();
  std::vector<std::vector<int32_t>> p, r;
  for (int i = 0; i < 5; ++i) {
    p.emplace_back(1 + (5 * i) % 13, 3 + i);
    r.emplace_back(1 + (9 * i + 4) % 17, 7 + i);
  }
  std::vector<PromptResponse> rows;
  for (int i = 0; i < 5; ++i)
    rows.push_back({p[i].data(), static_cast<int64_t>(p[i].size()), r[i].data(), static_cast<int64_t>(r[i].size())});
  SpecialIds ids;
  ids.bos = 1;
  ids.eos = 2;
  const SeqBatch pad = build_seq_batch(rows, ids, 64), pk = pack_rows(pad);
  auto grads = [&](const torch::Tensor& loss) {
    m->zero_grad();
    loss.backward();
    std::vector<torch::Tensor> g;
    for (auto& q : m->parameters()) g.push_back(q.grad().clone());
    return g;
  };
  const torch::Tensor sp = sequence_logprobs(m, pad, torch::kCPU), sk = sequence_logprobs(m, pk, torch::kCPU);
  EXPECT_LT((sk - sp).abs().max().item<double>(), 1e-4);
  EXPECT_TRUE(torch::equal(target_counts(pk), target_counts(pad)));
  const auto gp = grads(sp.pow(2).sum()), gk = grads(sk.pow(2).sum());
  for (size_t i = 0; i < gp.size(); ++i)
    EXPECT_LT((gk[i] - gp[i]).abs().max().item<double>() / (gp[i].abs().max().item<double>() + 1e-8), 1e-5)
        << "parameter " << i;
}

}  // namespace
}  // namespace rlhf
