// Rollout engine tests (rollout_engine.h): the paged, continuously batched, prefix-sharing engine
// draws the same tokens and log-probs as the static per-row sampler for the same row seeds; a
// row's output does not depend on its batch, the engine's limits or the block size; a prompt's
// samples share one prefill and its KV blocks.
#include <gtest/gtest.h>

#include <set>

#include "common/model/generate.h"
#include "common/model/rollout_engine.h"
#include "support/test_models.h"

namespace rlhf {
namespace {

// Ragged prompts, each `n` times in a row (a GRPO group), with distinct row seeds.
struct Batch {
  torch::Tensor prompts, mask;
  std::vector<uint64_t> seeds;
};
Batch grouped_prompts(int64_t n) {
  const std::vector<std::vector<int32_t>> distinct = {
      {5, 6, 7, 8, 9, 10, 11, 12, 13}, {3, 4}, {12}, {1, 2, 30, 31, 32, 33, 34}, {20, 21, 22, 23}};
  std::vector<std::vector<int32_t>> rows;
  Batch b;
  for (const auto& p : distinct)
    for (int64_t i = 0; i < n; ++i) {
      rows.push_back(p);
      b.seeds.push_back(1000 + 7 * b.seeds.size());
    }
  std::tie(b.prompts, b.mask) = left_pad(rows, 0);
  return b;
}

// Stop tokens that end rows at different steps: the free run's tokens at step 2 of every third row.
std::vector<int64_t> ragged_stops(const GenerateOutput& free_run) {
  std::set<int64_t> s;
  for (int64_t r = 0; r < free_run.tokens.size(0); r += 3)
    s.insert(free_run.tokens[r][free_run.prompt_len + 2].item<int64_t>());
  return {s.begin(), s.end()};
}

// The engine's output equals the static sampler's on the engine's width; the static sampler's
// extra columns (rounded up to eos_check_every) hold nothing.
void expect_same(const GenerateOutput& eng, const GenerateOutput& stat, const std::string& what,
                 double tol = 1e-4) {
  SCOPED_TRACE(what);
  const int64_t P = stat.prompt_len, N = eng.new_tokens;
  ASSERT_EQ(eng.prompt_len, P);
  ASSERT_LE(N, stat.new_tokens);
  EXPECT_TRUE(torch::equal(eng.tokens, stat.tokens.narrow(1, 0, P + N)));
  EXPECT_TRUE(torch::equal(eng.response_mask, stat.response_mask.narrow(1, 0, N)));
  EXPECT_TRUE(torch::equal(eng.attention_mask, stat.attention_mask.narrow(1, 0, P + N)));
  EXPECT_FALSE(stat.response_mask.narrow(1, N, stat.new_tokens - N).any().item<bool>());
  // Round-off only (different batch shapes; float32 logits of a sharp model reach ~100, so 1e-5
  // is a few ulps); a wrong key, position or distribution gives > 1e-2.
  EXPECT_LT((eng.logprobs - stat.logprobs.narrow(1, 0, N)).abs().max().item<double>(), tol);
}

class EngineFamily : public ::testing::TestWithParam<std::pair<Family, int64_t>> {};

// Greedy and sampled (temperature, top-k, top-p), groups of 1 and 8, rows ending at different
// steps (some at their first token), block sizes that do and do not divide the prompts.
TEST_P(EngineFamily, MatchesStaticSamplerRowForRow) {
  auto [fam, kv] = GetParam();
  CausalLM m = testing::sharp_model(fam, kv, 21);
  // In float64 the two samplers' round-off (batch shapes, gathered keys) stays far below the
  // float32 logits' own: what differs is then a real difference.
  m->to(torch::kDouble);
  for (int64_t n : {1, 8}) {
    Batch b = grouped_prompts(n);
    SamplingConfig sc;
    sc.max_new_tokens = 16;
    sc.top_k = 20;
    sc.top_p = 0.9;
    for (double temp : {1.1, 0.0}) {
      sc.temperature = temp;
      sc.engine = Engine::Static;
      sc.stop_at_eos = false;
      auto free_run = generate(m, b.prompts, b.mask, sc, b.seeds);
      sc.stop_at_eos = true;
      sc.extra_stop_ids = ragged_stops(free_run);
      sc.eos_id = sc.extra_stop_ids[0];
      auto stat = generate(m, b.prompts, b.mask, sc, b.seeds);
      auto lens = stat.response_mask.sum(1);
      EXPECT_LT(lens.min().item<int64_t>(), lens.max().item<int64_t>()) << "rows all end together";
      for (int64_t bs : {1, 4, 16}) {
        sc.engine = Engine::Paged;
        sc.engine_opt.block_size = bs;
        auto eng = generate(m, b.prompts, b.mask, sc, b.seeds);
        expect_same(eng, stat, "n " + std::to_string(n) + " temperature " + std::to_string(temp) +
                                   " block " + std::to_string(bs), 1e-5);
        EXPECT_EQ(eng.new_tokens, lens.max().item<int64_t>());
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Families, EngineFamily,
                         ::testing::Values(std::make_pair(Family::GPT2, int64_t(4)),
                                           std::make_pair(Family::Llama, int64_t(4)),
                                           std::make_pair(Family::Llama, int64_t(2))));

// Continuous batching: whatever the row and token limits (one row at a time, a group at a time,
// everything at once), each row's tokens are the same; so are a subset's rows generated alone.
TEST(RolloutEngine, RowsDoNotDependOnLimitsOrBatch) {
  CausalLM m = testing::sharp_model(Family::Llama, 2, 22);
  Batch b = grouped_prompts(3);
  SamplingConfig sc;
  sc.max_new_tokens = 12;
  sc.temperature = 1.0;
  sc.engine = Engine::Static;
  sc.stop_at_eos = false;
  sc.extra_stop_ids = ragged_stops(generate(m, b.prompts, b.mask, sc, b.seeds));
  sc.eos_id = sc.extra_stop_ids[0];
  sc.stop_at_eos = true;
  sc.engine = Engine::Paged;
  auto ref = generate(m, b.prompts, b.mask, sc, b.seeds);
  for (auto [rows, toks] : std::vector<std::pair<int64_t, int64_t>>{{1, 8192}, {3, 8192}, {4, 1}, {7, 20}}) {
    sc.engine_opt.max_batch_rows = rows;
    sc.engine_opt.max_batch_tokens = toks;
    auto got = generate(m, b.prompts, b.mask, sc, b.seeds);
    SCOPED_TRACE("max_batch_rows " + std::to_string(rows) + " max_batch_tokens " + std::to_string(toks));
    ASSERT_EQ(got.new_tokens, ref.new_tokens);
    EXPECT_TRUE(torch::equal(got.tokens, ref.tokens));
    EXPECT_TRUE(torch::equal(got.response_mask, ref.response_mask));
    EXPECT_LT((got.logprobs - ref.logprobs).abs().max().item<double>(), 1e-4);
    // Fewer rows at a time: more steps, never more rows per step than allowed.
    EXPECT_LE(got.decode_rows, got.decode_steps * std::max<int64_t>(rows, 3));
  }
  // Rows 3..8 (prompts 1 and 2) alone, with their seeds: the same tokens as inside the batch.
  sc.engine_opt = EngineOptions{};
  auto idx = torch::arange(3, 9);
  std::vector<uint64_t> seeds(b.seeds.begin() + 3, b.seeds.begin() + 9);
  auto sub = generate(m, b.prompts.index_select(0, idx), b.mask.index_select(0, idx), sc, seeds);
  const int64_t P = ref.prompt_len, N = sub.new_tokens;
  EXPECT_TRUE(torch::equal(sub.tokens.narrow(1, P, N), ref.tokens.index_select(0, idx).narrow(1, P, N)));
  EXPECT_FALSE(ref.response_mask.index_select(0, idx).narrow(1, N, ref.new_tokens - N).any().item<bool>());
}

// Prefix sharing: 2 prompts x 8 samples prefill 2 prompts, not 16, and hold far less KV than
// the static batch's cache; rows that end early stop costing decode work.
TEST(RolloutEngine, SamplesShareOnePrefillAndTheirBlocks) {
  CausalLM m = testing::sharp_model(Family::GPT2, 4, 23);
  std::vector<std::vector<int32_t>> rows;
  std::vector<int32_t> a(40), c(33);
  for (int i = 0; i < 40; ++i) a[i] = 1 + i % 40;
  for (int i = 0; i < 33; ++i) c[i] = 2 + (3 * i) % 39;
  for (int i = 0; i < 16; ++i) rows.push_back(i < 8 ? a : c);
  auto [pr, pm] = left_pad(rows, 0);
  std::vector<uint64_t> seeds;
  for (int i = 0; i < 16; ++i) seeds.push_back(500 + i);
  SamplingConfig sc;
  sc.max_new_tokens = 10;
  sc.temperature = 1.0;
  sc.engine = Engine::Static;
  auto stat = generate(m, pr, pm, sc, seeds);
  sc.engine = Engine::Paged;
  auto eng = generate(m, pr, pm, sc, seeds);
  expect_same(eng, stat, "2 prompts x 8");
  EXPECT_EQ(stat.prefill_tokens, 16 * 40);
  EXPECT_EQ(eng.prefill_tokens, 2 * 40);  // one left-padded pass over the 2 distinct prompts
  // By hand: a slot is 2 layers x (k + v) x 4 heads x 8 dims x 4 bytes = 512 bytes, a block of
  // 16 slots 8192 bytes. Static: 16 rows x 50 slots = 800 slots. Engine at its peak (all rows
  // decoding): 3 + 3 shared prompt blocks (40 = 2 x 16 + 8, 33 = 2 x 16 + 1), 7 copies of each
  // group's last block, and one more block per sample of the first group (8 free slots < 10 new
  // tokens; the second group's last block has 15) = 28 blocks = 448 slots (the prefill pass's 2
  // x 40 slots come before the copies).
  EXPECT_EQ(stat.peak_kv_bytes, 800 * 512);
  EXPECT_EQ(eng.peak_kv_bytes, 28 * 16 * 512);
  EXPECT_EQ(prompt_groups(pr, pm), (std::vector<int64_t>{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1}));
  // Same tokens under a different left padding are the same prompt.
  auto [p2, m2] = left_pad({{4, 5}, {9, 4, 5}, {4, 5}}, 0);
  EXPECT_EQ(prompt_groups(p2, m2), (std::vector<int64_t>{0, 1, 0}));
}

// Per-row length limits end each row at its own length in both samplers, and they agree.
TEST(RolloutEngine, RowLimitsEndRowsInBothSamplers) {
  CausalLM m = testing::sharp_model(Family::Llama, 2, 25);
  Batch b = grouped_prompts(2);  // 10 rows
  SamplingConfig sc;
  sc.max_new_tokens = 9;
  sc.temperature = 1.0;
  sc.row_max_new_tokens = {1, 9, 3, 4, 5, 6, 7, 8, 2, 5};
  sc.eos_check_every = 1;
  sc.engine = Engine::Static;
  auto stat = generate(m, b.prompts, b.mask, sc, b.seeds);
  sc.engine = Engine::Paged;
  auto eng = generate(m, b.prompts, b.mask, sc, b.seeds);
  expect_same(eng, stat, "row limits");
  auto lens = eng.response_mask.sum(1);
  for (int64_t r = 0; r < 10; ++r) EXPECT_EQ(lens[r].item<int64_t>(), sc.row_max_new_tokens[r]) << "row " << r;
  sc.row_max_new_tokens[3] = 10;
  EXPECT_NE(testing::error_of([&] { generate(m, b.prompts, b.mask, sc, b.seeds); }).find("row_max_new_tokens of 10"),
            std::string::npos);
}

TEST(RolloutEngine, BadLimitsAreNamed) {
  CausalLM m = testing::sharp_model(Family::GPT2, 4, 24);
  auto [pr, pm] = left_pad({{4, 5}}, 0);
  SamplingConfig sc;
  sc.engine_opt.max_batch_rows = 0;
  EXPECT_NE(testing::error_of([&] { generate(m, pr, pm, sc, std::vector<uint64_t>{1}); })
                .find("max_batch_rows (0)"),
            std::string::npos);
}

}  // namespace
}  // namespace rlhf
