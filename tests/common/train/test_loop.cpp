// TrainLoop (src/common/train/loop.h): a run whose optimizer steps keep being skipped as
// non-finite stops after train.max_skipped_steps in a row, with an error and an incomplete
// summary, instead of "completing" with nothing learned.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/train/loop.h"
#include "sft/sft_config.h"
#include "support/test_support.h"

namespace rlhf {
namespace {

using testing::error_of;
using testing::TempDir;

TEST(TrainLoop, StopsAfterMaxSkippedStepsInARow) {
  TempDir d("loop");
  RunRequest req;
  req.cfg = load_config(sft_stage(), "", {"run.dir=" + d.at("run"), "train.max_steps=20",
                                         "train.max_skipped_steps=3", "train.global_batch_size=1",
                                         "train.micro_batch_size=1", "train.warmup_steps=0"});
  set_stop_flag_for_test(false);
  RunContext ctx = start_run(req);
  ModelSetup ms;
  ms.cfg = testing::tiny_config(Family::GPT2);
  ms.tokenizer = load_tokenizer("byte");
  ms.tok = TokenizerInfo::of(*ms.tokenizer);
  CausalLM model(ms.cfg);
  TrainLoop loop(ctx, ms, {{"model.h5", model.get(), "causal_lm", {}}}, {{model.get(), "policy"}}, 8);
  int calls = 0;
  const std::string e = error_of([&] {
    loop.run([&] { ++calls; return StepStats{NAN, 1.0, nlohmann::json::object()}; },
             [] { return nlohmann::json::object(); });
  });
  EXPECT_EQ(calls, 3);
  EXPECT_NE(e.find("3 optimizer steps in a row were skipped as non-finite"), std::string::npos) << e;
  EXPECT_NE(e.find("train.max_skipped_steps = 3"), std::string::npos) << e;
  const auto summary = nlohmann::json::parse(std::ifstream(d.at("run") + "/summary.json"));
  EXPECT_EQ(summary.at("complete"), false);
  EXPECT_EQ(summary.at("steps"), 3);
  EXPECT_EQ(summary.at("skipped_steps"), 3);
  EXPECT_FALSE(std::filesystem::exists(d.at("run") + "/checkpoints/latest"));  // nothing saved
}

// A batch that does not split into micro-batches over the ranks: the error names the numbers and
// ends with the keys that fix it, with values that work (issue 33: the hint named the wrong knob).
TEST(TrainLoop, AccumulationErrorSaysWhatFixesIt) {
  EXPECT_EQ(accumulation_steps(32, 4, 2), 4);
  EXPECT_EQ(accumulation_steps(8, 8, 2, "ppo.minibatch_size", 4), 2);  // 8 prompts x 4 rows / (8 x 2)
  std::string e = error_of([] { accumulation_steps(12, 8, 1); });
  EXPECT_NE(e.find("train.global_batch_size = 12 is not divisible by train.micro_batch_size (8) x ranks (1) = 8: "
                   "set train.micro_batch_size to a divisor of the 12 rows per rank (e.g. 6), or set "
                   "train.global_batch_size to a multiple of 8"), std::string::npos) << e;
  // PPO: 3 prompts x 4 samples = 12 rows on 2 ranks, micro 4: 6 rows per rank -> micro 3; or a
  // minibatch that is a multiple of 8 / gcd(8, 4) = 2 prompts.
  e = error_of([] { accumulation_steps(3, 4, 2, "ppo.minibatch_size", 4); });
  EXPECT_NE(e.find("ppo.minibatch_size = 3 (12 rows, 4 per sample) is not divisible by train.micro_batch_size (4) x "
                   "ranks (2) = 8: set train.micro_batch_size to a divisor of the 6 rows per rank (e.g. 3), or "
                   "set ppo.minibatch_size to a multiple of 2"), std::string::npos) << e;
  e = error_of([] { accumulation_steps(3, 1, 2, "ppo.ptx_batch_size"); });
  EXPECT_NE(e.find("run on a number of ranks that divides its 3 rows, or set ppo.ptx_batch_size to a multiple of 2"),
            std::string::npos) << e;
}

}  // namespace
}  // namespace rlhf
