// test_losses.cpp — SFT / RM / PPO loss functions against hand-computed values.
// Every expected number below is derived in the comment next to it (not produced by the code).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/core/check.h"
#include "common/model/model.h"
#include "ppo/ppo_loss.h"
#include "rm/rm_loss.h"
#include "common/model/lm_loss.h"

namespace rlhf {
namespace {

const auto kD = torch::TensorOptions().dtype(torch::kDouble);

torch::Tensor dvec(std::vector<double> v) { return torch::tensor(v, kD); }
torch::Tensor bmat(std::vector<std::vector<int>> rows) {
  std::vector<torch::Tensor> r;
  for (auto& row : rows) r.push_back(torch::tensor(std::vector<int64_t>(row.begin(), row.end())));
  return torch::stack(r).to(torch::kBool);
}
torch::Tensor dmat(std::vector<std::vector<double>> rows) {
  std::vector<torch::Tensor> r;
  for (auto& row : rows) r.push_back(dvec(row));
  return torch::stack(r);
}
double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double softplus(double x) { return std::log1p(std::exp(x)); }
void expect_vec(const torch::Tensor& t, std::vector<double> want, double tol = 1e-9) {
  const torch::Tensor f = t.detach().to(torch::kDouble).contiguous().view(-1);
  ASSERT_EQ(f.numel(), static_cast<int64_t>(want.size()));
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(f[static_cast<int64_t>(i)].item<double>(), want[i], tol) << "index " << i;
}

// ---------------------------------------------------------------- SFT ---------------------------

// B=1, T=3, V=3, tokens [0, 1, 2], targets are tokens 1 and 2.
//   position 0 logits [0, 0, 0]      -> p(1) = 1/3,           nll = ln 3
//   position 1 logits [0, 0, ln 2]   -> p(2) = 2/(1+1+2)=1/2,  nll = ln 2
//   position 2 logits [100, ...]     -> predicts nothing (no token 3); must be ignored
// loss = (ln 3 + ln 2)/2 = ln 6 / 2 = 0.895879734614...
TEST(SftLoss, TwoTokenHandComputed) {
  torch::Tensor logits = torch::tensor({0.0, 0.0, 0.0, 0.0, 0.0, std::log(2.0), 100.0, -100.0, 5.0},
                                       kD)
                             .view({1, 3, 3})
                             .requires_grad_(true);
  const torch::Tensor tokens = torch::tensor({0L, 1L, 2L}).view({1, 3});
  // mask[0] = true must be ignored: nothing predicts the first token.
  const torch::Tensor mask = bmat({{1, 1, 1}});
  LmLoss l = masked_lm_loss(logits, tokens, mask);
  EXPECT_EQ(l.tokens, 2);
  EXPECT_NEAR(l.sum_nll.item<double>(), std::log(6.0), 1e-12);
  EXPECT_NEAR(l.loss.item<double>(), std::log(6.0) / 2.0, 1e-12);
  l.loss.backward();
  // d loss / d logits[0,0,:] = (softmax - onehot(1)) / 2 = ([1/3,1/3,1/3] - [0,1,0]) / 2
  expect_vec(logits.grad()[0][0], {1.0 / 6, -1.0 / 3, 1.0 / 6}, 1e-12);
  // d / d logits[0,1,:] = ([1/4, 1/4, 1/2] - [0,0,1]) / 2
  expect_vec(logits.grad()[0][1], {0.125, 0.125, -0.25}, 1e-12);
  expect_vec(logits.grad()[0][2], {0.0, 0.0, 0.0}, 0.0);  // last position predicts nothing
}

// A fully masked row adds nothing (and pad ids outside the vocab there are harmless);
// an all-masked batch gives loss 0 and zero gradients, not NaN.
TEST(SftLoss, FullyMaskedRowAndBatch) {
  torch::Tensor logits = torch::zeros({2, 3, 3}, kD);
  logits[0][1][2] = std::log(2.0);
  logits.requires_grad_(true);
  const torch::Tensor tokens = torch::tensor({0L, 1L, 2L, -1L, 999L, -1L}).view({2, 3});
  LmLoss l = masked_lm_loss(logits, tokens, bmat({{0, 1, 1}, {0, 0, 0}}));
  EXPECT_EQ(l.tokens, 2);
  EXPECT_NEAR(l.loss.item<double>(), std::log(6.0) / 2.0, 1e-12);  // same as above, row 1 unused

  LmLoss none = masked_lm_loss(logits, tokens, bmat({{1, 0, 0}, {0, 0, 0}}));
  EXPECT_EQ(none.tokens, 0);
  EXPECT_EQ(none.loss.item<double>(), 0.0);
  EXPECT_FALSE(std::isnan(none.loss.item<double>()));
  none.loss.backward();
  EXPECT_EQ(logits.grad().abs().sum().item<double>(), 0.0);
}

// token_logprobs: logits [0, 0, ln 2] -> log p(2) = ln(1/2), log p(0) = ln(1/4).
// entropy: uniform over 3 -> ln 3; p = [1/4, 1/4, 1/2] -> 2·(1/4)ln 4 + (1/2)ln 2 = 1.5 ln 2.
TEST(SftLoss, TokenLogprobsAndEntropy) {
  const torch::Tensor logits =
      torch::tensor({0.0, 0.0, std::log(2.0), 0.0, 0.0, 0.0}, kD).view({1, 2, 3});
  const torch::Tensor lp = token_logprobs(logits, torch::tensor({2L, 0L}).view({1, 2}));
  expect_vec(lp, {std::log(0.5), std::log(1.0 / 3)}, 1e-12);
  expect_vec(entropy_from_logits(logits), {1.5 * std::log(2.0), std::log(3.0)}, 1e-12);
  // bf16 logits are computed in float32 and returned as float32.
  const torch::Tensor lp16 =
      token_logprobs(logits.to(torch::kBFloat16), torch::tensor({2L, 0L}).view({1, 2}));
  EXPECT_EQ(lp16.scalar_type(), torch::kFloat);
  expect_vec(lp16, {std::log(0.5), std::log(1.0 / 3)}, 1e-2);  // ln 2 rounds in bf16
}

TEST(SftLoss, ShapeErrors) {
  const torch::Tensor logits = torch::zeros({1, 3, 4});
  EXPECT_THROW(masked_lm_loss(logits, torch::zeros({1, 2}, torch::kLong), bmat({{1, 1}})), Error);
  EXPECT_THROW(token_logprobs(torch::zeros({3, 4}), torch::zeros({3}, torch::kLong)), Error);
}

// fused_lm_loss (chunked head, gradients in forward) == masked_lm_loss on the materialised logits
// hidden·Wᵀ: value, token count and both gradients, for chunks of 1, 4, 1000 rows and the
// default; masked rows hold pad ids outside the vocabulary; one row has no target at all.
TEST(SftLoss, FusedHeadEqualsMaterialisedLogits) {
  torch::manual_seed(3);
  const int64_t B = 3, T = 7, C = 16, V = 50;
  auto hidden = (torch::randn({B, T, C}) * 2).requires_grad_();  // [B, T, C]
  auto weight = torch::randn({V, C}).requires_grad_();           // [V, C]
  auto tokens = torch::randint(0, V, {B, T}, torch::kLong);      // [B, T]
  auto mask = torch::rand({B, T}) < 0.7;                         // [B, T]
  mask[2].fill_(false);
  tokens.masked_fill_(mask.logical_not(), 999);
  LmLoss ref = masked_lm_loss(torch::linear(hidden, weight), tokens, mask);
  ref.loss.backward();
  auto gh_ref = hidden.grad().clone(), gw_ref = weight.grad().clone();
  ASSERT_GT(ref.tokens, 4);
  for (int64_t chunk : {1, 4, 1000, 0}) {
    hidden.mutable_grad().zero_();
    weight.mutable_grad().zero_();
    LmLoss got = fused_lm_loss(hidden, weight, tokens, mask, chunk);
    EXPECT_EQ(got.tokens, ref.tokens);
    EXPECT_NEAR(got.loss.item<double>(), ref.loss.item<double>(), 1e-5) << "chunk " << chunk;
    got.loss.backward();
    EXPECT_LT((hidden.grad() - gh_ref).abs().max().item<double>(), 1e-6) << "chunk " << chunk;
    EXPECT_LT((weight.grad() - gw_ref).abs().max().item<double>(), 1e-6) << "chunk " << chunk;
    EXPECT_GT(weight.grad().abs().max().item<double>(), 1e-3);
  }
  {  // without gradients: the same value
    torch::NoGradGuard ng;
    EXPECT_NEAR(fused_lm_loss(hidden, weight, tokens, mask).sum_nll.item<double>(),
                ref.sum_nll.item<double>(), 1e-4);
  }
  // No target anywhere: loss 0 and zero gradients, not NaN.
  hidden.mutable_grad().zero_();
  LmLoss none = fused_lm_loss(hidden, weight, tokens, torch::zeros({B, T}, torch::kBool));
  EXPECT_EQ(none.tokens, 0);
  EXPECT_EQ(none.loss.item<double>(), 0.0);
  none.loss.backward();
  EXPECT_EQ(hidden.grad().abs().sum().item<double>(), 0.0);
  EXPECT_THROW(fused_lm_loss(hidden, torch::zeros({V, C + 1}), tokens, mask), Error);
}

// Through a model: trunk + fused head == forward + masked_lm_loss, every parameter gradient, for a
// tied head (the embedding's gradient gets both the lookup and the head parts) and an untied one.
TEST(SftLoss, FusedHeadThroughModelTiedAndUntied) {
  for (bool tied : {true, false}) {
    ModelConfig c;
    c.vocab_size = 37;
    c.n_layer = 2;
    c.n_head = 2;
    c.n_kv_head = 2;
    c.d_model = 16;
    c.d_ff = 32;
    c.max_seq_len = 16;
    c.tie_embeddings = tied;
    torch::manual_seed(7);
    CausalLM m(c);
    auto tokens = torch::randint(0, 37, {2, 9}, torch::kLong);
    auto mask = torch::ones({2, 9}, torch::kBool);
    mask[1].narrow(0, 0, 4).fill_(false);  // a "prompt" that is not a target
    auto pos = positions_from_mask(torch::ones({2, 9}, torch::kBool));
    masked_lm_loss(m->forward(tokens, pos, torch::Tensor()), tokens, mask).loss.backward();
    std::vector<torch::Tensor> ref;
    for (auto& p : m->parameters()) {
      ref.push_back(p.grad().clone());
      p.mutable_grad().zero_();
    }
    fused_lm_loss(m->trunk(tokens, pos, torch::Tensor()), m->head_weight(), tokens, mask, 5)
        .loss.backward();
    auto params = m->parameters();
    for (size_t i = 0; i < params.size(); ++i)
      EXPECT_LT((params[i].grad() - ref[i]).abs().max().item<double>(), 1e-6)
          << (tied ? "tied" : "untied") << " parameter " << i;
  }
}

// ---------------------------------------------------------------- RM ----------------------------

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

// ---------------------------------------------------------------- PPO ---------------------------

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
