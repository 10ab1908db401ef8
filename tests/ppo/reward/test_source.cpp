// test_reward_source.cpp — ppo.reward behind one call (ppo/reward/source.h): a command scores
// several batches in one run and each batch gets its own rows' scores back; no rows, no run; the
// reward-model source gives each batch the model's own scores.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "common/dist/dist.h"
#include "common/tokenizer/tokenizer.h"
#include "ppo/reward/source.h"
#include "support/test_support.h"

namespace rlhf {
namespace {

// Rows [BOS | response (+ EOS) | pad...] over the byte tokenizer (BOS 256, EOS 257, pad 258):
// what decode_responses and the reward model read of a rollout.
Rollout byte_rollout(const std::vector<std::string>& responses, const std::vector<bool>& eos) {
  const int64_t B = static_cast<int64_t>(responses.size());
  int64_t N = 1;
  for (const auto& r : responses) N = std::max<int64_t>(N, static_cast<int64_t>(r.size()) + 1);
  Rollout ro;
  ro.P = 1;
  ro.N = N;
  ro.tokens = torch::full({B, 1 + N}, 258, torch::kLong);
  ro.attention_mask = torch::zeros({B, 1 + N}, torch::kBool);
  ro.response_mask = torch::zeros({B, N}, torch::kBool);
  ro.has_eos = torch::zeros({B}, torch::kBool);
  for (int64_t b = 0; b < B; ++b) {
    ro.tokens[b][0] = 256;
    ro.attention_mask[b][0] = true;
    const std::string& r = responses[b];
    const int64_t n = static_cast<int64_t>(r.size()) + (eos[b] ? 1 : 0);
    for (int64_t t = 0; t < n; ++t) {
      ro.tokens[b][1 + t] = t < static_cast<int64_t>(r.size()) ? static_cast<unsigned char>(r[t]) : 257;
      ro.attention_mask[b][1 + t] = true;
      ro.response_mask[b][t] = true;
    }
    ro.has_eos[b] = bool(eos[b]);
  }
  ro.positions = (ro.attention_mask.to(torch::kLong).cumsum(1) - 1).clamp_min(0);
  return ro;
}

PromptData byte_prompts(const std::vector<std::string>& rows) {
  PromptData d;
  for (const auto& s : rows) d.prompt.push(std::vector<int32_t>(s.begin(), s.end()));
  return d;
}

std::vector<float> values(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kCPU, torch::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

// One rank's two batches over the byte tokenizer: prompts "hi", "x" with responses "ab"+EOS, "c";
// prompt "long" with "dd"+EOS. A command source for them, whose runs are counted in a file.
struct TwoBatches {
  testing::TempDir dir{"reward_source"};
  PromptData data = byte_prompts({"hi", "x", "long"});
  Rollout a = byte_rollout({"ab", "c"}, {true, false}), b = byte_rollout({"dd"}, {true});
  std::vector<int64_t> ia{0, 1}, ib{2};
  ByteTokenizer tok;
  std::vector<RolloutBatch> both() const { return {{&a, &ia}, {&b, &ib}}; }
  RewardSource command(const std::string& cmd, int64_t command_rows = 0) const {
    PpoSection pc;
    pc.reward = RewardKind::Command;
    pc.reward_timeout_s = 30;
    pc.reward_command = "echo run >> " + dir.at("runs") + "; " + cmd;
    return RewardSource(pc, ScalarModel{nullptr}, SpecialIds{}, tok, command_rows);
  }
  int runs() const {
    std::ifstream f(dir.at("runs"));
    int n = 0;
    for (std::string line; std::getline(f, line);) ++n;
    return n;
  }
};

// One run of the program for the 3 rows; scores, by hand from the rows, come back to their batches
// in order. No batches: no run, no scores.
TEST(RewardSource, CommandScoresEveryBatchInOneRun) {
  if (std::system("command -v jq >/dev/null 2>&1") != 0) GTEST_SKIP() << "jq is not installed";
  const TwoBatches t;
  const RewardSource src =
      t.command("jq -r '(.prompt | length) * 10 + (.response | length) + (if .eos then 0.5 else 0 end)'");
  const std::vector<torch::Tensor> s = src.score(t.both(), t.data, world());
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(values(s[0]), (std::vector<float>{22.5f, 11.0f}));  // "hi"+"ab"+EOS, "x"+"c"
  EXPECT_EQ(values(s[1]), (std::vector<float>{42.5f}));         // "long"+"dd"+EOS
  EXPECT_EQ(t.runs(), 1);
  EXPECT_TRUE(src.score({}, t.data, world()).empty());
  EXPECT_EQ(t.runs(), 1) << "the program ran for no rows";
  EXPECT_EQ(values(src.score(t.b, t.data, t.ib, world())), (std::vector<float>{42.5f}));
  EXPECT_EQ(t.runs(), 2);
}

// ppo_train's command_rows: the rows go in runs of at most that many (2 + 1 here), in order; a
// failing run names its rows.
TEST(RewardSource, CommandRunsHoldAtMostCommandRows) {
  if (std::system("command -v jq >/dev/null 2>&1") != 0) GTEST_SKIP() << "jq is not installed";
  const TwoBatches t;
  const std::vector<torch::Tensor> s =
      t.command("jq -r '(.prompt | length) * 10 + (.response | length)'", 2).score(t.both(), t.data, world());
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(values(s[0]), (std::vector<float>{22.0f, 11.0f}));
  EXPECT_EQ(values(s[1]), (std::vector<float>{42.0f}));
  EXPECT_EQ(t.runs(), 2);
  // The second run (the row of "long") answers garbage.
  const RewardSource bad = t.command("in=$(cat); case \"$in\" in *long*) echo garbage;; *) echo 1; echo 1;; esac", 2);
  const std::string err = testing::error_of([&] { bad.score(t.both(), t.data, world()); });
  EXPECT_NE(err.find("rows [2, 3) of 3: ppo.reward_command"), std::string::npos) << err;
  EXPECT_NE(err.find("'garbage' is not one finite number"), std::string::npos) << err;
}

// The reward model's source: each batch's scores are the model's score at its last real token.
TEST(RewardSource, RewardModelScoresEachBatch) {
  torch::manual_seed(3);
  ModelConfig c = testing::tiny_config(Family::Llama);
  c.vocab_size = 260;
  ScalarModel rm(c);
  rm->eval();
  const TwoBatches t;
  const RewardSource src(rm);
  EXPECT_EQ(src.kind(), RewardKind::Rm);
  const std::vector<torch::Tensor> s = src.score(t.both(), t.data, world());
  ASSERT_EQ(s.size(), 2u);
  torch::NoGradGuard ng;
  // Each row alone, unpadded: the score at its last real token.
  const std::vector<std::vector<int64_t>> rows{{256, 'a', 'b', 257}, {256, 'c'}, {256, 'd', 'd', 257}};
  std::vector<float> want;
  for (const auto& r : rows) {
    const torch::Tensor t = torch::tensor(r, torch::kLong).view({1, -1});
    want.push_back(rm->score_last(t, torch::ones_like(t, torch::kBool)).item<float>());
  }
  const std::vector<float> got_a = values(s[0]), got_b = values(s[1]);
  ASSERT_EQ(got_a.size(), 2u);
  ASSERT_EQ(got_b.size(), 1u);
  EXPECT_NEAR(got_a[0], want[0], 1e-5);
  EXPECT_NEAR(got_a[1], want[1], 1e-5);
  EXPECT_NEAR(got_b[0], want[2], 1e-5);
}

}  // namespace
}  // namespace rlhf
