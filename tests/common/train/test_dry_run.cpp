// test_dry_run.cpp — --dry-run's pieces: the analytic parameter count against the modules
// themselves (every family, biases, q/k norm, untied, scalar head), the memory estimate's exact
// terms on a hand-checkable case, and the printed report for SFT and PPO from checkpoint headers.
#include <gtest/gtest.h>

#include "common/data/data.h"
#include "common/io/model_file.h"
#include "common/tokenizer/tokenizer.h"
#include "common/train/dry_run.h"
#include "ppo/ppo_config.h"
#include "rm/rm_config.h"
#include "sft/sft_config.h"
#include "support/test_support.h"

namespace {

using rlhf::Family;
using rlhf::ModelConfig;
using rlhf::testing::TempDir;
using rlhf::testing::tiny_config;

int64_t numel(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

std::vector<ModelConfig> variety() {
  std::vector<ModelConfig> out;
  out.push_back(tiny_config(Family::GPT2));
  ModelConfig untied = tiny_config(Family::GPT2);
  untied.tie_embeddings = false;
  out.push_back(untied);
  ModelConfig llama = tiny_config(Family::Llama, 2);
  llama.tie_embeddings = false;
  llama.qkv_bias = llama.o_bias = llama.mlp_bias = true;
  llama.head_dim_override = 16;
  out.push_back(llama);
  for (Family f : {Family::Mistral, Family::Qwen2, Family::Qwen3}) {
    ModelConfig c = ModelConfig::defaults_for(f);
    const ModelConfig t = tiny_config(f, 2);
    c.vocab_size = t.vocab_size, c.n_layer = t.n_layer, c.n_head = t.n_head, c.n_kv_head = 2;
    c.d_model = t.d_model, c.d_ff = t.d_ff, c.max_seq_len = t.max_seq_len;
    if (f == Family::Qwen3) c.head_dim_override = 12;
    out.push_back(c);
  }
  return out;
}

TEST(DryRun, ParameterCountEqualsTheModules) {
  for (const auto& c : variety()) {
    rlhf::CausalLM lm(c);
    rlhf::ScalarModel sm(c);
    EXPECT_EQ(c.parameter_count(false), numel(*lm)) << c.to_json().dump();
    EXPECT_EQ(c.parameter_count(true), numel(*sm)) << c.to_json().dump();
  }
}

// Writes a model.h5 of cfg into dir (random weights; only the header matters to --dry-run).
std::string write_ckpt(const std::filesystem::path& dir, const ModelConfig& cfg, bool scalar) {
  std::filesystem::create_directories(dir);
  const auto path = (dir / "model.h5").string();
  auto tok = rlhf::load_tokenizer("byte");
  if (scalar) {
    rlhf::ScalarModel m(cfg);
    rlhf::save_model_h5(path, *m, cfg, rlhf::TokenizerInfo::of(*tok), "scalar");
  } else {
    rlhf::CausalLM m(cfg);
    rlhf::save_model_h5(path, *m, cfg, rlhf::TokenizerInfo::of(*tok), "causal_lm");
  }
  return dir.string();
}

TEST(DryRun, MemoryTermsAndReport) {
  TempDir d("dry_run");
  ModelConfig pol = tiny_config(Family::Llama, 2);
  pol.vocab_size = 259;
  ModelConfig rm = pol;
  rm.n_layer = 1;
  rlhf::Config cfg = rlhf::parse_config(rlhf::ppo_stage(), "", "<test>");
  cfg.init = write_ckpt(d.path / "sft", pol, false);
  rlhf::ppo_section(cfg).reward_model = write_ckpt(d.path / "rm", rm, true);
  cfg.train.global_batch_size = 8;
  cfg.train.micro_batch_size = 2;
  rlhf::ppo_section(cfg).max_new_tokens = 16;
  cfg.data.max_seq_len = 32;

  const auto models = rlhf::stage_models(cfg);
  ASSERT_EQ(models.size(), 4u);
  const double a = pol.parameter_count(false), c = rm.parameter_count(true);
  const auto e = rlhf::estimate_memory(cfg, models, 2, false);
  EXPECT_DOUBLE_EQ(e.weights, 4 * (a + c + a + c));  // actor, critic, reference, reward (fp32)
  EXPECT_DOUBLE_EQ(e.grads, 4 * (a + c));             // only actor and critic train
  EXPECT_DOUBLE_EQ(e.optimizer, 8 * (a + c));
  const double T = std::min<double>(pol.max_seq_len, 32 + 16);
  EXPECT_DOUBLE_EQ(e.logits, 2 * T * 259 * 12.0);
  EXPECT_DOUBLE_EQ(e.kv_cache, 2.0 * pol.n_layer * 4 * T * 2 * pol.head_dim() * 4);  // 8 rows / 2 ranks
  EXPECT_GT(e.activations, 0);

  ::testing::internal::CaptureStdout();
  EXPECT_EQ(rlhf::dry_run(cfg, 1), 0);
  const std::string out = ::testing::internal::GetCapturedStdout();
  for (const char* want : {"actor", "critic", "reference", "reward", "peak memory estimate",
                           "kv cache", "frozen"})
    EXPECT_NE(out.find(want), std::string::npos) << want << " missing in\n" << out;
  EXPECT_FALSE(std::filesystem::exists(cfg.run.dir + "/config.yaml"));  // nothing written

  rlhf::ppo_section(cfg).reward_model = (d.path / "missing").string();
  const std::string err = rlhf::testing::error_of([&] { rlhf::stage_models(cfg); });
  EXPECT_NE(err.find("missing"), std::string::npos) << err;
}

// RM batch sizes count groups: a micro-batch forwards every response of its groups, so the
// activations scale with the largest K of data.train (2 when the file cannot be read), and a
// scalar head has no vocabulary logits.
TEST(DryRun, RewardModelRowsAreGroupsTimesK) {
  TempDir d("dry_run_rm");
  ModelConfig pol = tiny_config(Family::Llama, 2);
  pol.vocab_size = 259;
  rlhf::Config cfg = rlhf::parse_config(rlhf::rm_stage(), "", "<test>");
  cfg.init = write_ckpt(d.path / "sft", pol, false);
  cfg.train.global_batch_size = 8;
  cfg.train.micro_batch_size = 2;
  cfg.data.max_seq_len = 32;
  const auto models = rlhf::stage_models(cfg);
  cfg.data.train = (d.path / "missing.h5").string();
  const auto k2 = rlhf::estimate_memory(cfg, models, 1, false);
  EXPECT_EQ(k2.logits, 0.0);
  rlhf::RankedData r;
  auto tok = rlhf::load_tokenizer("byte");
  r.meta.tokenizer = tok->identity();
  r.meta.tokenizer_spec = tok->spec();
  r.meta.vocab_size = tok->vocab_size();
  r.push_group({1, 2}, {{3}, {4}}, {0, 1});
  r.push_group({5}, {{6}, {7}, {8}, {9}, {10}}, {0, 1, 2, 3, 4});  // K = 5
  cfg.data.train = (d.path / "ranked.h5").string();
  r.save(cfg.data.train);
  const auto k5 = rlhf::estimate_memory(cfg, models, 1, false);
  EXPECT_GT(k2.activations, 0.0);
  EXPECT_DOUBLE_EQ(k5.activations, k2.activations * 5.0 / 2.0);  // linear in rows: 2 x 5 vs 2 x 2
  rlhf::Config sft_cfg = cfg;  // the same shapes under SFT's plan (a row per sample)
  sft_cfg.stage = &rlhf::sft_stage();
  const auto sft = rlhf::estimate_memory(sft_cfg, rlhf::stage_models(sft_cfg), 1, false);
  EXPECT_DOUBLE_EQ(k5.activations, sft.activations * 5.0);  // SFT: 2 rows per micro-batch
}

// dist.zero_stage divides the trained models' state by the rank count: moments from stage 1,
// gradients from 2, weights from 3; the frozen reference and reward model stay whole.
TEST(DryRun, ZeroStageDividesTrainedState) {
  TempDir d("dry_run_zero");
  ModelConfig pol = tiny_config(Family::Llama, 2);
  rlhf::Config cfg = rlhf::parse_config(rlhf::ppo_stage(), "", "<test>");
  cfg.init = write_ckpt(d.path / "sft", pol, false);
  rlhf::ppo_section(cfg).reward_model = write_ckpt(d.path / "rm", pol, true);
  cfg.train.global_batch_size = 8;
  const auto models = rlhf::stage_models(cfg);
  const double a = pol.parameter_count(false), c = pol.parameter_count(true);
  for (int64_t z = 0; z <= 3; ++z) {
    cfg.dist.zero_stage = z;
    const auto e = rlhf::estimate_memory(cfg, models, 4, false);
    EXPECT_DOUBLE_EQ(e.optimizer, 8 * (a + c) / (z >= 1 ? 4 : 1)) << "stage " << z;
    EXPECT_DOUBLE_EQ(e.grads, 4 * (a + c) / (z >= 2 ? 4 : 1)) << "stage " << z;
    EXPECT_DOUBLE_EQ(e.weights, 4 * (a + c) / (z >= 3 ? 4 : 1) + 4 * (a + c)) << "stage " << z;
  }
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(rlhf::dry_run(cfg, 4), 0);
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("ZeRO stage 3"), std::string::npos) << out;
}

}  // namespace

// LoRA, ppo.frozen_dtype and ppo.offload_frozen in the estimate, against hand-computed terms:
// the PPO actor and critic train adapters (+ the critic's score head) on a frozen base, the
// reference is the actor's base (no bytes), frozen weights are 2 B in bf16, an offloaded reward
// model counts only while scoring.
TEST(DryRun, LoraFrozenBf16AndOffloadTerms) {
  TempDir d("dry_run_lora");
  ModelConfig pol = tiny_config(Family::Llama, 2);
  pol.vocab_size = 259;
  rlhf::Config cfg = rlhf::parse_config(rlhf::ppo_stage(), "", "<test>");
  cfg.init = write_ckpt(d.path / "sft", pol, false);
  rlhf::ppo_section(cfg).reward_model = write_ckpt(d.path / "rm", pol, true);
  cfg.lora.rank = 4;
  cfg.lora.targets = "q,v";
  rlhf::ppo_section(cfg).frozen_dtype = rlhf::Precision::BF16;
  rlhf::ppo_section(cfg).offload_frozen = true;
  cfg.train.device = rlhf::DeviceKind::CUDA;
  cfg.train.precision = rlhf::Precision::BF16;
  const auto models = rlhf::stage_models(cfg);
  const double a = pol.parameter_count(false), c = pol.parameter_count(true);
  // q: C -> H*D, v: C -> Hkv*D; rank 4; 2 layers
  const double C = pol.d_model, q = pol.n_head * pol.head_dim(), kv = pol.n_kv_head * pol.head_dim();
  const double ad = pol.n_layer * 4 * ((C + q) + (C + kv));
  EXPECT_EQ(rlhf::lora_parameter_count(pol, cfg.lora), static_cast<int64_t>(ad));
  const double head = C + 1;  // the critic's score weight and bias
  const auto e = rlhf::estimate_memory(cfg, models, 1, true);
  ASSERT_EQ(e.models.size(), 4u);
  EXPECT_EQ(e.models[0].trained, static_cast<int64_t>(ad));
  EXPECT_EQ(e.models[1].trained, static_cast<int64_t>(ad + head));
  EXPECT_DOUBLE_EQ(e.models[0].weights, 2 * a + 4 * ad);                  // bf16 base + fp32 adapters
  EXPECT_DOUBLE_EQ(e.models[1].weights, 2 * (c - head) + 4 * (ad + head));
  EXPECT_DOUBLE_EQ(e.models[2].weights, 0);                               // reference = actor's base
  EXPECT_DOUBLE_EQ(e.models[3].weights, 2 * c);                           // reward model in bf16
  EXPECT_DOUBLE_EQ(e.weights, 2 * a + 4 * ad + 2 * (c - head) + 4 * (ad + head));
  EXPECT_DOUBLE_EQ(e.offloaded, 2 * c);
  EXPECT_DOUBLE_EQ(e.grads, 4 * (2 * ad + head));
  EXPECT_DOUBLE_EQ(e.optimizer, 8 * (2 * ad + head));
  EXPECT_DOUBLE_EQ(e.total(), e.weights + e.grads + e.optimizer +
                                  std::max(e.activations + e.logits, e.kv_cache + e.offloaded));

  ::testing::internal::CaptureStdout();
  EXPECT_EQ(rlhf::dry_run(cfg, 1), 0);
  const std::string out = ::testing::internal::GetCapturedStdout();
  for (const char* want : {"LoRA r=4", "the actor's base, adapters off", "frozen weights bf16",
                           "offloaded to the CPU", "offloaded weights"})
    EXPECT_NE(out.find(want), std::string::npos) << want << " missing in\n" << out;
}
