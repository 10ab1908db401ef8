// Critic-free advantage estimators (src/ppo/advantages.h) against hand-computed values.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/core/check.h"
#include "ppo/advantages.h"
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
  expect_values(group_advantages(kScores, 4, GroupEstimator::Grpo),
                {-2 / sd, -1 / sd, 0, 3 / sd, 0, 0, 0, 0}, 1e-5);
  // -0.92582, -0.46291, 0, 1.38873 by hand:
  EXPECT_NEAR(group_advantages(kScores, 4, GroupEstimator::Grpo)[0].item<double>(), -0.9258201, 1e-6);
}

TEST(GroupAdvantages, DrGrpoOnlyCentres) {
  expect_values(group_advantages(kScores, 4, GroupEstimator::DrGrpo), {-2, -1, 0, 3, 0, 0, 0, 0});
}

TEST(GroupAdvantages, RlooSubtractsTheMeanOfTheOthers) {
  // r_1 = 1 against (2 + 3 + 6)/3 = 11/3 -> -8/3; r_4 = 6 against (1 + 2 + 3)/3 = 2 -> 4.
  expect_values(group_advantages(kScores, 4, GroupEstimator::Rloo),
                {-8.0 / 3, -4.0 / 3, 0, 4, 0, 0, 0, 0});
}

TEST(GroupAdvantages, GroupsAreConsecutiveRowsAndDtypeIsKept) {
  // Groups of 2 of the same scores: {1, 2} {3, 6} {5, 5} {5, 5}.
  const torch::Tensor a = group_advantages(kScores.to(torch::kFloat), 2, GroupEstimator::DrGrpo);
  EXPECT_EQ(a.scalar_type(), torch::kFloat);
  expect_values(a, {-0.5, 0.5, -1.5, 1.5, 0, 0, 0, 0});
}

TEST(GroupAdvantages, BadShapesAreNamed) {
  EXPECT_NE(error_of([] { group_advantages(kScores, 3, GroupEstimator::Grpo); })
                .find("8 scores are not groups of 3"), std::string::npos);
  EXPECT_NE(error_of([] { group_advantages(kScores, 1, GroupEstimator::Rloo); })
                .find("at least 2 samples"), std::string::npos);
  EXPECT_NE(error_of([] { group_advantages(kScores.view({2, 4}), 4, GroupEstimator::Rloo); })
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

}  // namespace
}  // namespace rlhf
