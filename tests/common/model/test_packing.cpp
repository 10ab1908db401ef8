// Packed (padding-free) training batches (batch.h pack_rows, model.h forward_packed): the same
// rows packed back to back give the padded batch's loss and gradients (SFT's fused LM loss; DPO's
// sequence log-probs: tests/dpo), with and without activation checkpointing, for GPT-2 and GQA
// Llama.
#include <gtest/gtest.h>

#include "common/data/batch.h"
#include "common/model/lm_loss.h"
#include "common/train/train_common.h"
#include "support/test_models.h"

namespace rlhf {
namespace {

struct Rows {
  std::vector<std::vector<int32_t>> prompt, response;
  std::vector<PromptResponse> rows() const {
    std::vector<PromptResponse> out;
    for (size_t i = 0; i < prompt.size(); ++i)
      out.push_back({prompt[i].data(), static_cast<int64_t>(prompt[i].size()), response[i].data(),
                     static_cast<int64_t>(response[i].size())});
    return out;
  }
};

// Ragged rows: 1 to 19 tokens of prompt, 1 to 23 of response.
Rows ragged_rows() {
  Rows r;
  for (int i = 0; i < 6; ++i) {
    std::vector<int32_t> p, s;
    for (int j = 0; j < 1 + (7 * i) % 19; ++j) p.push_back(3 + (i * 5 + j) % 37);
    for (int j = 0; j < 1 + (11 * i + 3) % 23; ++j) s.push_back(3 + (i * 3 + 2 * j) % 37);
    r.prompt.push_back(p);
    r.response.push_back(s);
  }
  return r;
}

SpecialIds ids_12() {
  SpecialIds ids;
  ids.bos = 1;
  ids.eos = 2;
  return ids;
}

std::vector<torch::Tensor> grads_of(torch::nn::Module& m, const torch::Tensor& loss) {
  m.zero_grad();
  loss.backward();
  std::vector<torch::Tensor> g;
  for (auto& p : m.parameters()) g.push_back(p.grad().clone());
  return g;
}

void expect_close(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const double scale = b[i].abs().max().item<double>() + 1e-8;
    EXPECT_LT((a[i] - b[i]).abs().max().item<double>() / scale, 1e-5) << "parameter " << i;
  }
}

TEST(PackRows, LaysRowsBackToBackWithRestartingPositions) {
  const std::vector<int32_t> p0 = {5, 6}, r0 = {7}, p1 = {8}, r1 = {9, 10, 11};
  SeqBatch pad = build_seq_batch({{p0.data(), 2, r0.data(), 1}, {p1.data(), 1, r1.data(), 3}}, ids_12(), 16);
  SeqBatch pk = pack_rows(pad);
  // Rows [1 5 6 7 2] and [1 8 9 10 11 2]: 11 tokens, positions 0..4 then 0..5.
  EXPECT_TRUE(torch::equal(pk.tokens, torch::tensor({1, 5, 6, 7, 2, 1, 8, 9, 10, 11, 2}, torch::kLong).unsqueeze(0)));
  EXPECT_TRUE(torch::equal(pk.positions, torch::tensor({0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5}, torch::kLong).unsqueeze(0)));
  EXPECT_TRUE(torch::equal(pk.loss_mask, torch::tensor({0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1}, torch::kBool).unsqueeze(0)));
  EXPECT_TRUE(torch::equal(pk.packed.row_of, torch::tensor({0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1}, torch::kLong).unsqueeze(0)));
  EXPECT_EQ(pk.packed.rows, 2);
  // Lengths 5 and 6: one length group (5 >= 3/4 of 6), longest row first: row 1 then row 0.
  ASSERT_EQ(pk.packed.groups.size(), 1u);
  const auto& g = pk.packed.groups[0];
  EXPECT_EQ(g.rows, 2);
  EXPECT_EQ(g.longest, 6);
  EXPECT_TRUE(torch::equal(g.gather, torch::tensor({5, 6, 7, 8, 9, 10, 0, 1, 2, 3, 4, 11}, torch::kLong)));
  EXPECT_TRUE(torch::equal(pk.packed.scatter, torch::tensor({6, 7, 8, 9, 10, 0, 1, 2, 3, 4, 5}, torch::kLong)));
  // Lengths 12 and 5 fall in two groups.
  const std::vector<int32_t> r2 = {3, 4, 5, 6, 7, 8, 9, 10, 11};
  SeqBatch two = pack_rows(build_seq_batch({{p0.data(), 1, r2.data(), 9}, {p1.data(), 1, r0.data(), 1}}, ids_12(), 16));
  ASSERT_EQ(two.packed.groups.size(), 2u);
  EXPECT_EQ(two.packed.groups[0].longest, 12);
  EXPECT_EQ(two.packed.groups[1].longest, 4);
  EXPECT_EQ(pk.target_tokens, pad.target_tokens);
  // framed_length is the length build_seq_batch gives a row: 5 and 6 here; cut to max_len.
  EXPECT_EQ(framed_length({p0.data(), 2, r0.data(), 1}, ids_12(), 16), 5);
  EXPECT_EQ(framed_length({p1.data(), 1, r1.data(), 3}, ids_12(), 16), 6);
  EXPECT_EQ(framed_length({p1.data(), 1, r1.data(), 3}, ids_12(), 4), 4);
}

class PackedFamily : public ::testing::TestWithParam<std::pair<Family, int64_t>> {};

TEST_P(PackedFamily, LossAndGradientsEqualThePaddedBatch) {
  auto [fam, kv] = GetParam();
  const Rows r = ragged_rows();
  const SeqBatch pad = build_seq_batch(r.rows(), ids_12(), 64);
  const SeqBatch pk = pack_rows(pad);
  EXPECT_LT(pk.tokens.size(1), pad.tokens.numel() * 3 / 4) << "the rows are ragged";
  for (bool ckpt : {false, true}) {
    SCOPED_TRACE(ckpt ? "activation checkpointing" : "plain");
    auto cfg = testing::tiny_config(fam, kv);
    cfg.activation_checkpointing = ckpt;
    torch::manual_seed(31);
    CausalLM m(cfg);
    m->train();
    const LmLoss lp = batch_lm_loss(m, pad, torch::kCPU), lk = batch_lm_loss(m, pk, torch::kCPU);
    EXPECT_EQ(lp.tokens, lk.tokens);
    EXPECT_NEAR(lk.sum_nll.item<double>(), lp.sum_nll.item<double>(), 1e-5 * lp.sum_nll.item<double>());
    expect_close(grads_of(*m, lk.sum_nll), grads_of(*m, lp.sum_nll));
  }
}

INSTANTIATE_TEST_SUITE_P(Families, PackedFamily,
                         ::testing::Values(std::make_pair(Family::GPT2, int64_t(4)),
                                           std::make_pair(Family::Llama, int64_t(2))));

}  // namespace
}  // namespace rlhf
