// test_lm_loss.cpp — the LM loss (common/model/lm_loss.h) against hand-computed values, and the fused
// head against materialised logits. Every expected number is derived in the comment next to it.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/core/check.h"
#include "common/model/lm_loss.h"
#include "common/model/model.h"
#include "support/test_tensors.h"

namespace rlhf {
namespace {

using namespace testing;  // support/test_tensors.h: dvec, dmat, bmat, expect_vec, sigmoid, softplus
const auto kD = torch::TensorOptions().dtype(torch::kDouble);

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

}  // namespace
}  // namespace rlhf
