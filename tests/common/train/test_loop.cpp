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

}  // namespace
}  // namespace rlhf
