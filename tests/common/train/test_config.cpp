// Config: every error class names the key/file, the bad value and what is expected.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/train/config.h"
#include "dpo/dpo_config.h"
#include "ppo/ppo_config.h"
#include "rm/rm_config.h"
#include "sft/sft_config.h"
#include "support/test_support.h"

using rlhf::ConfigError;

namespace {

using rlhf::testing::error_of;

std::string temp_file(const std::string& name, const std::string& text) {
  auto dir = std::filesystem::temp_directory_path() / "rlhf_test_config";
  std::filesystem::create_directories(dir);
  std::string p = (dir / name).string();
  std::ofstream(p) << text;
  return p;
}

}  // namespace

TEST(Config, DefaultsAndCommonKeysInEveryStage) {
  for (const rlhf::StageSpec* s : {&rlhf::sft_stage(), &rlhf::rm_stage(), &rlhf::ppo_stage(), &rlhf::dpo_stage()}) {
    auto keys = rlhf::config_keys(*s);
    for (const char* k : {"run.dir", "run.seed", "train.max_steps", "train.learning_rate",
                          "train.global_batch_size", "train.micro_batch_size"}) {
      EXPECT_NE(std::find(keys.begin(), keys.end(), k), keys.end()) << k << " in " << s->name;
    }
  }
}

TEST(Config, ParsesTypedValuesAndOverrides) {
  auto cfg = rlhf::parse_config(rlhf::sft_stage(),
                                "run: {dir: out/x, seed: 7}\n"
                                "train: {max_steps: 12, learning_rate: 1e-3, global_batch_size: 16}\n"
                                "model: {family: llama, n_kv_head: 2}\n",
                                "t.yaml", {"train.micro_batch_size=4", "train.learning_rate=2e-4"});
  EXPECT_EQ(cfg.run.dir, "out/x");
  EXPECT_EQ(cfg.run.seed, 7);
  EXPECT_EQ(cfg.train.max_steps, 12);
  EXPECT_DOUBLE_EQ(cfg.train.learning_rate, 2e-4);  // --set wins over the file
  EXPECT_EQ(cfg.train.micro_batch_size, 4);
  EXPECT_EQ(cfg.model.family, rlhf::Family::Llama);
  EXPECT_EQ(cfg.model.n_kv_head, 2);
}

TEST(Config, DumpRoundTrips) {
  auto cfg = rlhf::parse_config(rlhf::ppo_stage(), "ppo: {kl_coef: 0.125, kl_estimator: k3}\n", "t", {});
  auto again = rlhf::parse_config(rlhf::ppo_stage(), rlhf::dump_config(cfg), "dump", {});
  EXPECT_EQ(rlhf::dump_config(cfg), rlhf::dump_config(again));
  EXPECT_EQ(rlhf::ppo_section(again).kl_estimator, rlhf::KlEstimator::K3);
  EXPECT_DOUBLE_EQ(rlhf::ppo_section(again).kl_coef, 0.125);
}

TEST(Config, UnknownKeySuggestsClosest) {
  auto msg = error_of([] { rlhf::parse_config(rlhf::sft_stage(), "train: {lerning_rate: 0.1}\n", "a.yaml"); });
  EXPECT_NE(msg.find("a.yaml"), std::string::npos) << msg;
  EXPECT_NE(msg.find("train.lerning_rate"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'train.learning_rate'"), std::string::npos) << msg;
  // Via --set too.
  msg = error_of([] { rlhf::parse_config(rlhf::sft_stage(), "", "a.yaml", {"train.max_step=3"}); });
  EXPECT_NE(msg.find("train.max_steps"), std::string::npos) << msg;
  // A stage-specific key in the wrong stage is unknown.
  msg = error_of([] { rlhf::parse_config(rlhf::sft_stage(), "ppo: {kl_coef: 0.1}\n", "a.yaml"); });
  EXPECT_NE(msg.find("unknown key 'ppo' for stage sft"), std::string::npos) << msg;
}

TEST(Config, WrongTypeNamesKeyValueAndExpectation) {
  auto msg = error_of([] { rlhf::parse_config(rlhf::sft_stage(), "train: {max_steps: many}\n", "b.yaml"); });
  EXPECT_NE(msg.find("train.max_steps = 'many'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected an integer"), std::string::npos) << msg;
  msg = error_of([] { rlhf::parse_config(rlhf::sft_stage(), "train: {max_steps: 2.5}\n", "b.yaml"); });
  EXPECT_NE(msg.find("expected an integer"), std::string::npos) << msg;
  msg = error_of([] { rlhf::parse_config(rlhf::sft_stage(), "model: {family: bert}\n", "b.yaml"); });
  EXPECT_NE(msg.find("one of gpt2 | llama"), std::string::npos) << msg;
  msg = error_of([] { rlhf::parse_config(rlhf::sft_stage(), "model: {tie_embeddings: maybe}\n", "b.yaml"); });
  EXPECT_NE(msg.find("true or false"), std::string::npos) << msg;
  msg = error_of([] { rlhf::parse_config(rlhf::sft_stage(), "train: 3\n", "b.yaml"); });
  EXPECT_NE(msg.find("'train' is a section"), std::string::npos) << msg;
}

TEST(Config, OutOfRangeNamesKeyValueAndRange) {
  auto msg = error_of([] { rlhf::parse_config(rlhf::sft_stage(), "train: {learning_rate: -1}\n", "c.yaml"); });
  EXPECT_NE(msg.find("train.learning_rate = '-1'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected a number > 0"), std::string::npos) << msg;
  msg = error_of([] { rlhf::parse_config(rlhf::sft_stage(), "train: {micro_batch_size: -1}\n", "c.yaml"); });
  EXPECT_NE(msg.find("integer >= 0"), std::string::npos) << msg;
  msg = error_of([] { rlhf::parse_config(rlhf::ppo_stage(), "ppo: {top_p: 1.5}\n", "c.yaml"); });
  EXPECT_NE(msg.find("ppo.top_p = '1.5'"), std::string::npos) << msg;
}

TEST(Config, MissingFileNamesPath) {
  auto msg = error_of([] { rlhf::load_config(rlhf::sft_stage(), "/nonexistent/dir/sft.yaml", {}); });
  EXPECT_NE(msg.find("/nonexistent/dir/sft.yaml"), std::string::npos) << msg;
}

TEST(Config, MalformedYamlGivesFileLineColumn) {
  std::string p = temp_file("bad.yaml", "run:\n  dir: x\ntrain: {max_steps: 3\n");
  auto msg = error_of([&] { rlhf::load_config(rlhf::sft_stage(), p, {}); });
  EXPECT_NE(msg.find(p + ":"), std::string::npos) << msg;
  EXPECT_NE(msg.find("malformed YAML"), std::string::npos) << msg;
  // line 3 or 4 depending on where the parser notices the missing brace; a column is present
  EXPECT_TRUE(msg.find(p + ":3:") != std::string::npos || msg.find(p + ":4:") != std::string::npos) << msg;
}

TEST(Config, BadSetSyntaxAndEnvExpansion) {
  auto msg = error_of([] { rlhf::parse_config(rlhf::sft_stage(), "", "x", {"train.max_steps"}); });
  EXPECT_NE(msg.find("expected KEY=VALUE"), std::string::npos) << msg;
  setenv("RLHF_TEST_DIR", "/tmp/zz", 1);
  auto cfg = rlhf::parse_config(rlhf::sft_stage(), "run: {dir: '${RLHF_TEST_DIR}/sft'}\ndata: {train: '${RLHF_NOPE:-d.h5}'}\n", "x");
  EXPECT_EQ(cfg.run.dir, "/tmp/zz/sft");
  EXPECT_EQ(cfg.data.train, "d.h5");
  msg = error_of([] { rlhf::parse_config(rlhf::sft_stage(), "data: {train: '${RLHF_NOPE_UNSET}'}\n", "x"); });
  EXPECT_NE(msg.find("RLHF_NOPE_UNSET is not set"), std::string::npos) << msg;
}

TEST(Config, ModelValidationIsReported) {
  auto msg = error_of([] { rlhf::parse_config(rlhf::sft_stage(), "model: {d_model: 130, n_head: 4}\n", "m.yaml"); });
  EXPECT_NE(msg.find("m.yaml"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model"), std::string::npos) << msg;
}

TEST(Config, EditDistance) {
  EXPECT_EQ(rlhf::edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(rlhf::edit_distance("", "abc"), 3u);
  EXPECT_EQ(rlhf::edit_distance("same", "same"), 0u);
}

// Keys that are accepted but would do nothing are reported (start_run prints them as warnings).
TEST(Config, IneffectiveKeysAreReported) {
  using rlhf::ineffective_keys;
  auto plain = rlhf::parse_config(rlhf::sft_stage(), "model: {d_model: 64}\n", "a.yaml");
  EXPECT_TRUE(ineffective_keys(plain).empty());  // no init: model.* applies
  auto init = rlhf::parse_config(rlhf::rm_stage(), "init: /ckpt/sft\nmodel: {d_model: 64, dropout: 0.1}\n"
                                 "tokenizer: gpt2dir\n", "b.yaml");
  auto w = ineffective_keys(init);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_NE(w[0].find("model.d_model = 64 has no effect: init '/ckpt/sft'"), std::string::npos) << w[0];
  EXPECT_NE(w[1].find("tokenizer = 'gpt2dir' has no effect"), std::string::npos) << w[1];
  // PPO scores data.eval's prompts every train.eval_every iterations (eval_* metrics).
  auto ppo = rlhf::parse_config(rlhf::ppo_stage(), "data: {eval: e.h5}\n", "c.yaml");
  EXPECT_TRUE(ineffective_keys(ppo).empty());
  EXPECT_TRUE(ineffective_keys(rlhf::parse_config(rlhf::sft_stage(), "data: {eval: e.h5}\n", "d.yaml")).empty());
}

// Every shipped config loads under its stage's schema, and no PPO config asks for a sampler
// ppo_train refuses (top-k / top-p truncation, greedy).
TEST(Config, ShippedConfigsLoad) {
  const std::string root = std::string(RLHF_SOURCE_DIR) + "/configs/";
  int loaded = 0;
  ::setenv("RLHF_MODEL", "/nonexistent/imported-model", 0);  // the GPU recipes need it set
  for (const char* dir : {"tiny", "oasst", "qwen3-0.6b", "llama3.2-1b"}) {
    for (auto [file, stage] : {std::pair{"sft.yaml", &rlhf::sft_stage()}, std::pair{"rm.yaml", &rlhf::rm_stage()},
                               std::pair{"ppo.yaml", &rlhf::ppo_stage()}}) {
      const std::string path = root + dir + "/" + file;
      rlhf::Config c;
      ASSERT_NO_THROW(c = rlhf::load_config(*stage, path, {})) << path;
      if (stage == &rlhf::ppo_stage()) {
        EXPECT_GT(rlhf::ppo_section(c).temperature, 0.0) << path;
        EXPECT_EQ(rlhf::ppo_section(c).top_k, 0) << path;
        EXPECT_EQ(rlhf::ppo_section(c).top_p, 1.0) << path;
      }
      ++loaded;
    }
  }
  EXPECT_EQ(loaded, 12);
}

// Defaults that depend on another key (issue 31), resolved at parse time and written out by
// dump_config: ppo.kl_estimator is k2 with ppo.kl_in_loss (k1 there is refused, naming why),
// ppo.loss_aggregation is seq_mean_token_sum_norm with ppo.advantage: dr_grpo; an explicit value
// always wins; dpo.ipo_average defaults to true.
TEST(Config, PpoDefaultsThatDependOnOtherKeys) {
  using rlhf::KlEstimator;
  using rlhf::LossAggregation;
  auto ppo = [](const std::vector<std::string>& sets) { return rlhf::parse_config(rlhf::ppo_stage(), "", "x", sets); };
  EXPECT_EQ(rlhf::ppo_section(ppo({})).kl_estimator, KlEstimator::K1);  // in the reward
  EXPECT_EQ(rlhf::ppo_section(ppo({})).loss_aggregation, LossAggregation::TokenMean);
  const auto in_loss = ppo({"ppo.kl_in_loss=true"});
  EXPECT_EQ(rlhf::ppo_section(in_loss).kl_estimator, KlEstimator::K2);
  EXPECT_EQ(rlhf::ppo_section(ppo({"ppo.kl_in_loss=true", "ppo.kl_estimator=k3"})).kl_estimator, KlEstimator::K3);
  const std::string err = error_of([&] { ppo({"ppo.kl_in_loss=true", "ppo.kl_estimator=k1"}); });
  EXPECT_NE(err.find("ppo.kl_estimator: k1 with ppo.kl_in_loss"), std::string::npos) << err;
  EXPECT_NE(err.find("expected gradient of exactly zero"), std::string::npos) << err;
  EXPECT_EQ(rlhf::ppo_section(ppo({"ppo.advantage=dr_grpo", "ppo.samples_per_prompt=4"})).loss_aggregation,
            LossAggregation::SeqMeanTokenSumNorm);
  EXPECT_EQ(rlhf::ppo_section(ppo({"ppo.advantage=dr_grpo", "ppo.samples_per_prompt=2", "ppo.loss_aggregation=token_mean"})).loss_aggregation,
            LossAggregation::TokenMean);
  EXPECT_EQ(rlhf::ppo_section(ppo({"ppo.advantage=grpo", "ppo.samples_per_prompt=2", "ppo.loss_aggregation=seq_mean_token_mean"})).loss_aggregation,
            LossAggregation::SeqMeanTokenMean);
  // The resolved values are written out: the dump parses back to the same settings.
  const auto again = rlhf::parse_config(rlhf::ppo_stage(), rlhf::dump_config(in_loss), "dump");
  EXPECT_EQ(rlhf::ppo_section(again).kl_estimator, KlEstimator::K2);
  EXPECT_TRUE(rlhf::dpo_section(rlhf::parse_config(rlhf::dpo_stage(), "", "x")).ipo_average);
  EXPECT_FALSE(rlhf::dpo_section(rlhf::parse_config(rlhf::dpo_stage(), "", "x", {"dpo.ipo_average=false"})).ipo_average);
}
