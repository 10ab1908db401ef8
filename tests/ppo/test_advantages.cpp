// Critic-free advantage estimators (src/ppo/advantages.h) and their wiring to a rollout
// (src/ppo/critic_free.h) against hand-computed values.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/core/check.h"
#include "common/dist/dist.h"
#include "ppo/advantages.h"
#include "ppo/critic_free.h"
#include "ppo/ppo_loss.h"
#include "support/test_support.h"

namespace rlhf {
namespace {

using testing::error_of;

void expect_values(const torch::Tensor& t, const std::vector<double>& want, double tol = 1e-6) {
  ASSERT_EQ(t.numel(), static_cast<int64_t>(want.size()));
  const torch::Tensor d = t.to(torch::kDouble).reshape({-1});
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(d[i].item<double>(), want[i], tol) << "entry " << i;
}

// Two prompts, 4 samples each: rewards {1, 2, 3, 6} (mean 3, centred {-2, -1, 0, 3}, unbiased
// variance 14/3, std 2.1602468995) and {5, 5, 5, 5} (nothing to learn from).
const torch::Tensor kScores = torch::tensor({1.0, 2.0, 3.0, 6.0, 5.0, 5.0, 5.0, 5.0});

TEST(GroupAdvantages, GrpoIsTheGroupZScore) {
  const double sd = std::sqrt(14.0 / 3.0);
  expect_values(group_advantages(kScores, 4, AdvantageKind::Grpo),
                {-2 / sd, -1 / sd, 0, 3 / sd, 0, 0, 0, 0}, 1e-5);
  // -0.92582, -0.46291, 0, 1.38873 by hand:
  EXPECT_NEAR(group_advantages(kScores, 4, AdvantageKind::Grpo)[0].item<double>(), -0.9258201, 1e-6);
}

TEST(GroupAdvantages, DrGrpoOnlyCentres) {
  expect_values(group_advantages(kScores, 4, AdvantageKind::DrGrpo), {-2, -1, 0, 3, 0, 0, 0, 0});
}

TEST(GroupAdvantages, RlooSubtractsTheMeanOfTheOthers) {
  // r_1 = 1 against (2 + 3 + 6)/3 = 11/3 -> -8/3; r_4 = 6 against (1 + 2 + 3)/3 = 2 -> 4.
  expect_values(group_advantages(kScores, 4, AdvantageKind::Rloo),
                {-8.0 / 3, -4.0 / 3, 0, 4, 0, 0, 0, 0});
}

TEST(GroupAdvantages, GroupsAreConsecutiveRowsAndDtypeIsKept) {
  // Groups of 2 of the same scores: {1, 2} {3, 6} {5, 5} {5, 5}.
  const torch::Tensor a = group_advantages(kScores.to(torch::kFloat), 2, AdvantageKind::DrGrpo);
  EXPECT_EQ(a.scalar_type(), torch::kFloat);
  expect_values(a, {-0.5, 0.5, -1.5, 1.5, 0, 0, 0, 0});
}

TEST(GroupAdvantages, BadShapesAreNamed) {
  EXPECT_NE(error_of([] { group_advantages(kScores, 3, AdvantageKind::Grpo); })
                .find("8 scores are not groups of 3"), std::string::npos);
  EXPECT_NE(error_of([] { group_advantages(kScores, 1, AdvantageKind::Rloo); })
                .find("at least 2 samples"), std::string::npos);
  EXPECT_NE(error_of([] { group_advantages(kScores.view({2, 4}), 4, AdvantageKind::Rloo); })
                .find("scores must be [B]"), std::string::npos);
}

TEST(ReinforcePP, ReturnIsTheMaskedSuffixSum) {
  // Row 0: prompt token (reward 9, masked out), response rewards 0.1, -0.2, 1.0, pad (7, masked
  // out) -> G = 0, 0.9, 0.8, 1.0, 0. Row 1: an empty response -> all 0.
  const torch::Tensor r = torch::tensor({{9.0, 0.1, -0.2, 1.0, 7.0}, {1.0, 2.0, 3.0, 4.0, 5.0}});
  const torch::Tensor m = torch::tensor({{0, 1, 1, 1, 0}, {0, 0, 0, 0, 0}});
  expect_values(reinforce_pp_returns(r, m), {0, 0.9, 0.8, 1.0, 0, 0, 0, 0, 0, 0});
}

TEST(PerToken, SpreadsOverTheResponseOnly) {
  const torch::Tensor m = torch::tensor({{0, 1, 1}, {1, 0, 0}});
  expect_values(per_token(torch::tensor({2.0, -1.0}), m), {0, 2, 2, -1, 0, 0});
}

// One group of 4 responses of 2 tokens each, with per-token KL whose sequence sums are
// [0.010, 0.012, 0.008, 0.011] (the issue-31 example), rewards as make_experience fills them.
Rollout kl_group(const std::vector<double>& scores, double reward_kl) {
  Rollout ro;
  ro.score = torch::tensor(scores, torch::kFloat);
  ro.kl = torch::tensor({0.004, 0.006, 0.005, 0.007, 0.003, 0.005, 0.001, 0.010}, torch::kFloat).view({4, 2});
  ro.response_mask = torch::ones({4, 2}, torch::kBool);
  ro.rewards = compute_rewards(ro.kl, ro.score, ro.response_mask, reward_kl);
  return ro;
}

// Scores that tie carry no signal, whatever the KL: before, R = score − β·ΣKL was normalised, so
// the KL noise became unit-variance advantages [0.146, −1.024, 1.316, −0.439] (β = 0.7). Now the
// group part Â is 0 and the KL enters as OpenRLHF applies it, −β·Σ_{s ≥ t} KL_s per token:
//   row 0: −0.7·[0.010, 0.006] = [−0.0070, −0.0042];  row 1: −0.7·[0.012, 0.007] = [−0.0084, −0.0049]
//   row 2: −0.7·[0.008, 0.005] = [−0.0056, −0.0035];  row 3: −0.7·[0.011, 0.010] = [−0.0077, −0.0070]
TEST(CriticFree, TiedScoresGiveNoGroupAdvantageWhateverTheKl) {
  for (AdvantageKind k : {AdvantageKind::Grpo, AdvantageKind::DrGrpo, AdvantageKind::Rloo}) {
    Rollout ro = kl_group({1, 1, 1, 1}, 0.7);
    critic_free_advantages(ro, k, 4, 0.7, world());
    expect_values(ro.advantages, {-0.0070, -0.0042, -0.0084, -0.0049, -0.0056, -0.0035, -0.0077, -0.0070}, 1e-7);
    // returns: the shaped rewards' return-to-go, score − β·Σ_{s ≥ t} KL_s
    expect_values(ro.returns, {0.9930, 0.9958, 0.9916, 0.9951, 0.9944, 0.9965, 0.9923, 0.9930}, 1e-6);
    EXPECT_EQ(critic_free_metrics(ro, k, 4, world())["groups_tied"].get<double>(), 1.0);
  }
}

// With ppo.kl_in_loss the rewards carry no KL (β = 0 here): tied scores give every advantage
// exactly 0, and every group counts as tied.
TEST(CriticFree, TiedScoresWithKlInTheLossGiveExactlyZero) {
  Rollout ro = kl_group({1, 1, 1, 1}, 0.0);
  critic_free_advantages(ro, AdvantageKind::Grpo, 4, 0.0, world());
  EXPECT_EQ(ro.advantages.abs().max().item<double>(), 0.0);
  const auto j = critic_free_metrics(ro, AdvantageKind::Grpo, 2, world());  // 2 groups of 2, both tied
  EXPECT_EQ(j["groups_tied"].get<double>(), 1.0);
  EXPECT_EQ(j["adv_seq_mean"].get<double>(), 0.0);
}

// Scores {1, 2, 3, 6}: the z-score of the score alone (±1e-6 eps aside), KL added unscaled by
// 1/std: A[0, 0] = −2/std − 0.7·0.010 with std = √(14/3) = 2.1602469 -> −0.9258201 − 0.007.
TEST(CriticFree, GroupAdvantageIsTheScoresThenTheKlPerToken) {
  Rollout ro = kl_group({1, 2, 3, 6}, 0.7);
  critic_free_advantages(ro, AdvantageKind::Grpo, 4, 0.7, world());
  const double sd = std::sqrt(14.0 / 3.0);
  expect_values(ro.advantages, {-2 / sd - 0.0070, -2 / sd - 0.0042, -1 / sd - 0.0084, -1 / sd - 0.0049,
                                -0.0056, -0.0035, 3 / sd - 0.0077, 3 / sd - 0.0070}, 1e-6);
  EXPECT_EQ(critic_free_metrics(ro, AdvantageKind::Grpo, 4, world())["groups_tied"].get<double>(), 0.0);
}

}  // namespace
}  // namespace rlhf
