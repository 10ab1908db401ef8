// test_rm_loss.cpp — the K-wise ranking loss (rm/rm_loss.h) against hand-computed values and an
// analytic gradient. Every expected number is derived in the comment next to it.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/core/check.h"
#include "rm/rm_loss.h"
#include "support/test_tensors.h"

namespace rlhf {
namespace {

using namespace testing;  // support/test_tensors.h: dvec, dmat, bmat, expect_vec, sigmoid, softplus
const auto kD = torch::TensorOptions().dtype(torch::kDouble);

// Independent scalar reference for the gradient: for each pair (w, l) in group g,
// d/dr_w softplus(-(r_w - r_l)) = -σ(-(r_w - r_l)) and d/dr_l = +σ(-(r_w - r_l)),
// each scaled by 1/n_g / (groups with pairs), n_g = C(K,2) (paper) or the ordered pairs of g.
std::vector<double> analytic_grad(const std::vector<double>& r, const std::vector<int64_t>& off,
                                  const std::vector<int32_t>& rank, PairNormalizer norm) {
  std::vector<double> g(r.size(), 0.0);
  std::vector<std::vector<std::pair<int64_t, int64_t>>> pairs;
  std::vector<double> n_g;
  for (size_t k = 0; k + 1 < off.size(); ++k) {
    std::vector<std::pair<int64_t, int64_t>> p;
    for (int64_t i = off[k]; i < off[k + 1]; ++i)
      for (int64_t j = off[k]; j < off[k + 1]; ++j)
        if (rank[i] < rank[j]) p.push_back({i, j});
    const double K = static_cast<double>(off[k + 1] - off[k]);
    if (!p.empty()) {
      pairs.push_back(p);
      n_g.push_back(norm == PairNormalizer::Paper ? K * (K - 1) / 2 : static_cast<double>(p.size()));
    }
  }
  for (size_t k = 0; k < pairs.size(); ++k)
    for (auto [w, l] : pairs[k]) {
      const double s = sigmoid(-(r[w] - r[l])) / n_g[k] / pairs.size();
      g[w] -= s;
      g[l] += s;
    }
  return g;
}

struct RmCase {
  torch::Tensor r;
  RankingLoss out;
};
RmCase run_rm(const std::vector<double>& r, const std::vector<int64_t>& off,
              const std::vector<int32_t>& rank, PairNormalizer norm = PairNormalizer::Paper) {
  RmCase c{dvec(r).requires_grad_(true), {}};
  c.out = kwise_ranking_loss(c.r, off, rank, norm);
  c.out.loss.backward();
  expect_vec(c.r.grad(), analytic_grad(r, off, rank, norm), 1e-12);
  return c;
}

// K = 2: r = [1, 0], response 0 better. loss = -log σ(1) = softplus(-1) = 0.313261687518...
// gradient: d/dr_c = -σ(-1) = -0.268941421369..., d/dr_r = +0.268941421369...
TEST(RmLoss, K2IsPairwise) {
  RmCase c = run_rm({1.0, 0.0}, {0, 2}, {0, 1});
  EXPECT_NEAR(c.out.loss.item<double>(), 0.31326168751822286, 1e-12);
  EXPECT_NEAR(c.out.loss.item<double>(), -std::log(sigmoid(1.0 - 0.0)), 1e-12);
  expect_vec(c.r.grad(), {-0.2689414213699951, 0.2689414213699951}, 1e-12);
  EXPECT_EQ(c.out.pairs, 1);
  EXPECT_EQ(c.out.correct, 1);
  EXPECT_EQ(c.out.groups, 1);
  EXPECT_NEAR(c.out.margin_sum, 1.0, 1e-12);
  // Second response better: -log σ(0 - 1) = softplus(1) = 1.313261687518...
  RmCase d = run_rm({1.0, 0.0}, {0, 2}, {1, 0});
  EXPECT_NEAR(d.out.loss.item<double>(), 1.3132616875182228, 1e-12);
  EXPECT_EQ(d.out.correct, 0);
  EXPECT_NEAR(d.out.margin_sum, -1.0, 1e-12);
}

// K = 3: r = [2, 0, 1], ranks [0, 2, 1] (0 best, then 2, then 1). Pairs (w,l), margins:
//   (0,1): 2,  (0,2): 1,  (2,1): 1
// loss = (softplus(-2) + 2·softplus(-1)) / 3 = (0.126928011 + 2·0.313261688) / 3 = 0.251150462...
// grads: r0: -(σ(-2) + σ(-1))/3 = -(0.119202922 + 0.268941421)/3 = -0.129381448
//        r1: +0.129381448;  r2: (-σ(-1) + σ(-1))/3 = 0
TEST(RmLoss, K3HandComputed) {
  RmCase c = run_rm({2.0, 0.0, 1.0}, {0, 3}, {0, 2, 1});
  EXPECT_NEAR(c.out.loss.item<double>(), 0.25115046202647273, 1e-12);
  expect_vec(c.r.grad(), {-0.1293814477973709, 0.1293814477973709, 0.0}, 1e-12);
  EXPECT_EQ(c.out.pairs, 3);
  EXPECT_EQ(c.out.correct, 3);
  EXPECT_NEAR(c.out.margin_sum, 4.0, 1e-12);
}

// K = 4 with a tie: r = [0.5, 1.5, -1, 0], ranks [0, 1, 1, 2] (responses 1 and 2 tied).
// Pairs and margins: (0,1): -1, (0,2): 1.5, (0,3): 0.5, (1,3): 1.5, (2,3): -1; (1,2) tied -> none.
// sum = 2·softplus(1) + 2·softplus(-1.5) + softplus(-0.5)
//     = 2·1.313261688 + 2·0.201413278 + 0.474076984 = 3.503426915...
// paper (÷ C(4,2) = 6): 0.583904486...;  strict_pairs (÷ 5 ordered pairs): 0.700685383...
// correct = 3 (margins > 0), margin_sum = -1 + 1.5 + 0.5 + 1.5 - 1 = 1.5
TEST(RmLoss, K4WithTies) {
  RmCase c = run_rm({0.5, 1.5, -1.0, 0.0}, {0, 4}, {0, 1, 1, 2});
  EXPECT_NEAR(c.out.loss.item<double>(), 3.5034269151820574 / 6, 1e-12);
  EXPECT_EQ(c.out.pairs, 5);
  EXPECT_EQ(c.out.correct, 3);
  EXPECT_NEAR(c.out.margin_sum, 1.5, 1e-12);
  RmCase s = run_rm({0.5, 1.5, -1.0, 0.0}, {0, 4}, {0, 1, 1, 2}, PairNormalizer::StrictPairs);
  EXPECT_NEAR(s.out.loss.item<double>(), 0.7006853830364115, 1e-12);
}

// The example: K = 3, rewards [1, 0, 0], ranks [0, 0, 1] (responses 0 and 1 tied).
// Ordered pairs (0,2) margin 1 and (1,2) margin 0:
//   paper        = (softplus(-1) + softplus(0)) / 3 = (0.313261688 + 0.693147181) / 3 = 0.335469623...
//   strict_pairs = (softplus(-1) + softplus(0)) / 2 = 0.503204434...
// gradients: r0 = -σ(-1)/n, r1 = -σ(0)/n, r2 = (σ(-1) + σ(0))/n, n = 3 or 2.
TEST(RmLoss, PairNormalizerPaperVersusStrictPairs) {
  const double sum = 0.31326168751822286 + 0.69314718055994531;
  RmCase p = run_rm({1.0, 0.0, 0.0}, {0, 3}, {0, 0, 1}, PairNormalizer::Paper);
  EXPECT_NEAR(p.out.loss.item<double>(), sum / 3, 1e-12);
  expect_vec(p.r.grad(), {-0.2689414213699951 / 3, -0.5 / 3, (0.2689414213699951 + 0.5) / 3}, 1e-12);
  RmCase s = run_rm({1.0, 0.0, 0.0}, {0, 3}, {0, 0, 1}, PairNormalizer::StrictPairs);
  EXPECT_NEAR(s.out.loss.item<double>(), sum / 2, 1e-12);
  expect_vec(s.r.grad(), {-0.2689414213699951 / 2, -0.5 / 2, (0.2689414213699951 + 0.5) / 2}, 1e-12);
  EXPECT_EQ(p.out.pairs, 2);
  EXPECT_EQ(s.out.pairs, 2);
}

// Several groups: K=2 (above), an all-tied group (no pairs), K=3 (above), a K=1 group, K=4 (above).
// loss = mean of the three group losses; the tied and single groups contribute nothing.
//   paper:        (0.313261688 + 0.251150462 + 0.583904486) / 3 = 0.382772212...
//   strict_pairs: (0.313261688 + 0.251150462 + 0.700685383) / 3 = 0.421699178...
TEST(RmLoss, MultiGroupAllTiesContributeNothing) {
  RmCase c = run_rm({1.0, 0.0, /*tied*/ 3.0, -7.0, 9.0, /*K3*/ 2.0, 0.0, 1.0, /*K1*/ 4.0,
                     /*K4*/ 0.5, 1.5, -1.0, 0.0},
                    {0, 2, 5, 8, 9, 13}, {0, 1, 2, 2, 2, 0, 2, 1, 0, 0, 1, 1, 2});
  EXPECT_NEAR(c.out.loss.item<double>(),
              (0.31326168751822286 + 0.25115046202647273 + 3.5034269151820574 / 6) / 3, 1e-12);
  RmCase s = run_rm({1.0, 0.0, /*tied*/ 3.0, -7.0, 9.0, /*K3*/ 2.0, 0.0, 1.0, /*K1*/ 4.0,
                     /*K4*/ 0.5, 1.5, -1.0, 0.0},
                    {0, 2, 5, 8, 9, 13}, {0, 1, 2, 2, 2, 0, 2, 1, 0, 0, 1, 1, 2},
                    PairNormalizer::StrictPairs);
  EXPECT_NEAR(s.out.loss.item<double>(), 0.42169917752703573, 1e-12);
  EXPECT_EQ(c.out.groups, 3);
  EXPECT_EQ(c.out.pairs, 1 + 3 + 5);
  EXPECT_EQ(c.out.correct, 1 + 3 + 3);
  // The tied group's rewards get exactly zero gradient.
  expect_vec(c.r.grad().slice(0, 2, 5), {0.0, 0.0, 0.0}, 0.0);
}

// Only tied / single groups: loss 0, no pairs, backward works with zero gradient.
TEST(RmLoss, NoPairsAnywhere) {
  torch::Tensor r = dvec({1.0, 2.0, 3.0}).requires_grad_(true);
  RankingLoss out = kwise_ranking_loss(r, {0, 2, 3}, {1, 1, 0});
  EXPECT_EQ(out.pairs, 0);
  EXPECT_EQ(out.groups, 0);
  EXPECT_EQ(out.loss.item<double>(), 0.0);
  out.loss.backward();
  EXPECT_EQ(r.grad().abs().sum().item<double>(), 0.0);
}

// K = 9: all rewards equal -> every pair has margin 0, loss = softplus(0) = ln 2, 36 = C(9,2)
// pairs, none correct. With r_i = -i and rank i, pair (i, j>i) has margin j - i = d, and d occurs
// 9 - d times: loss = Σ_{d=1..8} (9-d)·softplus(-d) / 36, all 36 correct, margin_sum =
// Σ (9-d)·d = 120.
TEST(RmLoss, K9Sanity) {
  std::vector<int32_t> rank(9);
  std::vector<double> flat(9, 0.25), desc(9);
  for (int i = 0; i < 9; ++i) rank[i] = i, desc[i] = -i;
  RmCase a = run_rm(flat, {0, 9}, rank);
  EXPECT_NEAR(a.out.loss.item<double>(), std::log(2.0), 1e-12);
  EXPECT_EQ(a.out.pairs, 36);
  EXPECT_EQ(a.out.correct, 0);
  RmCase b = run_rm(desc, {0, 9}, rank);
  double want = 0.0;
  for (int d = 1; d <= 8; ++d) want += (9 - d) * softplus(-d);
  EXPECT_NEAR(b.out.loss.item<double>(), want / 36.0, 1e-12);
  EXPECT_EQ(b.out.correct, 36);
  EXPECT_NEAR(b.out.margin_sum, 120.0, 1e-9);
}

TEST(RmLoss, BadOffsetsThrow) {
  const torch::Tensor r = dvec({1.0, 2.0, 3.0});
  EXPECT_THROW(kwise_ranking_loss(r, {0, 2}, {0, 1, 2}), Error);        // does not end at N
  EXPECT_THROW(kwise_ranking_loss(r, {0, 2, 1, 3}, {0, 1, 2}), Error);  // decreasing
  EXPECT_THROW(kwise_ranking_loss(r, {0, 3}, {0, 1}), Error);           // ranks size
}

}  // namespace
}  // namespace rlhf
