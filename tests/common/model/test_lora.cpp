// LoRA (common/model/lora.h): target names, fresh adapters leave outputs unchanged, gradients
// reach only adapters (and a score head), merged weights equal base + adapters, adapters off,
// LoRA model files (adapters + base reference) read back merged and separate, with clear errors.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/io/model_file.h"
#include "common/model/lora.h"
#include "common/model/model.h"
#include "common/tokenizer/tokenizer.h"
#include "support/test_support.h"

namespace rlhf {
namespace {

using testing::error_of;
using testing::TempDir;
using testing::tiny_config;

ModelConfig cfg_of(Family f) {
  ModelConfig c = tiny_config(f, f == Family::GPT2 ? 4 : 2);
  c.qk_norm = f == Family::Qwen3;
  return c;
}

LoraInfo info_of(int64_t rank, double alpha, const std::string& targets, double dropout = 0) {
  LoraInfo i;
  i.opt.rank = rank;
  i.opt.alpha = alpha;
  i.opt.targets = targets;
  i.opt.dropout = dropout;
  i.base = "/nonexistent/base/model.h5";
  i.base_fingerprint = "none";
  return i;
}

std::pair<torch::Tensor, torch::Tensor> batch(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  torch::manual_seed(seed);
  auto tokens = torch::randint(0, V, {B, T}, torch::kLong);
  auto mask = torch::ones({B, T}, torch::kBool);
  mask.index_put_({0, torch::indexing::Slice(0, 3)}, false);  // left padding on row 0
  return {tokens, mask};
}

torch::Tensor logits_of(CausalLM& m, const torch::Tensor& tokens, const torch::Tensor& mask) {
  torch::NoGradGuard ng;
  return m->forward(tokens, positions_from_mask(mask), mask);
}

// B = 0 in a fresh adapter: give every B random values so the adapters change the outputs.
void randomise_b(torch::nn::Module& m, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard ng;
  for (auto& p : m.named_parameters())
    if (p.key().find(".lora_B.") != std::string::npos) p.value().normal_(0.0, 0.5);
}

TEST(Lora, TargetNamesPerFamily) {
  auto llama = parse_lora_targets(" v, q ,q", Family::Llama);
  ASSERT_EQ(llama.size(), 2u);
  EXPECT_EQ(llama[0], LoraTarget::Q);
  EXPECT_EQ(llama[1], LoraTarget::V);
  EXPECT_EQ(parse_lora_targets("all", Family::Qwen3).size(), 7u);
  EXPECT_EQ(parse_lora_targets("all", Family::GPT2).size(), 3u);
  const std::string e = error_of([] { parse_lora_targets("c_attn,gate", Family::GPT2); });
  EXPECT_NE(e.find("model.lora.targets: 'gate' is not a projection of a gpt2 model"), std::string::npos) << e;
  EXPECT_NE(e.find("c_attn,c_proj,c_fc"), std::string::npos) << e;
  EXPECT_NE(error_of([] { parse_lora_targets("qq", Family::Llama); }).find("'qq'"), std::string::npos);
  EXPECT_NE(error_of([] { parse_lora_targets(" , ", Family::Llama); }).find("is empty"), std::string::npos);
}

TEST(Lora, ParameterCountEqualsTheAdaptersAttached) {
  for (Family f : {Family::GPT2, Family::Llama, Family::Qwen3}) {
    for (const std::string targets : {"all", f == Family::GPT2 ? "c_proj" : "k,o,down"}) {
      torch::manual_seed(1);
      ModelConfig c = cfg_of(f);
      if (f == Family::Qwen3) c.head_dim_override = 12;
      ScalarModel m(c);
      const LoraInfo info = info_of(3, 6, targets);
      attach_lora(*m, info);
      int64_t n = 0;
      for (const auto& p : m->named_parameters())
        if (is_lora_name(p.key())) n += p.value().numel();
      EXPECT_EQ(lora_parameter_count(c, info.opt), n) << family_name(f) << " " << targets;
    }
  }
}

// A rank above a projection's smaller side is refused, naming the key and the largest rank.
TEST(Lora, RankLargerThanAProjectionIsRefused) {
  ModelConfig c = cfg_of(Family::Llama);
  ScalarModel m(c);
  const int64_t side = std::min(c.d_model, c.n_kv_head * c.head_dim());  // k_proj: the smallest
  const std::string e = error_of([&] { attach_lora(*m, info_of(side + 1, 2, "k")); });
  EXPECT_NE(e.find(fmt::format("model.lora.rank = {} exceeds the smaller side", side + 1)), std::string::npos) << e;
  EXPECT_NE(e.find(fmt::format("set model.lora.rank <= {}", side)), std::string::npos) << e;
  ScalarModel ok(c);
  attach_lora(*ok, info_of(side, 2, "k"));  // the largest rank that exists
}

TEST(Lora, FreshAdaptersLeaveOutputsUnchanged) {
  for (Family f : {Family::GPT2, Family::Llama}) {
    torch::manual_seed(1);
    CausalLM m(cfg_of(f));
    auto [tokens, mask] = batch(2, 9, 41, 5);
    auto before = logits_of(m, tokens, mask);
    const int64_t n_base = static_cast<int64_t>(m->parameters().size());
    attach_lora(*m, info_of(4, 8, "all"));
    EXPECT_GT(static_cast<int64_t>(m->parameters().size()), n_base);
    EXPECT_TRUE(torch::equal(logits_of(m, tokens, mask), before)) << family_name(f);
  }
}

TEST(Lora, GradientsReachOnlyAdaptersAndTheScoreHead) {
  torch::manual_seed(2);
  CausalLM lm(tiny_config(Family::Llama, 2));
  attach_lora(*lm, info_of(2, 4, "q,v,down"));
  randomise_b(*lm, 3);
  auto [tokens, mask] = batch(2, 7, 41, 4);
  lm->forward(tokens, positions_from_mask(mask), mask).pow(2).mean().backward();
  int adapters = 0;
  for (auto& p : lm->named_parameters()) {
    if (is_lora_name(p.key())) {
      ++adapters;
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
      EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
    } else {
      EXPECT_FALSE(p.value().requires_grad()) << p.key();
      EXPECT_FALSE(p.value().grad().defined()) << p.key();
    }
  }
  EXPECT_EQ(adapters, 2 * 2 * 3);  // 2 layers x 3 projections x {A, B}

  torch::manual_seed(2);
  ScalarModel rm(tiny_config(Family::GPT2));
  attach_lora(*rm, info_of(2, 4, "c_attn"));
  rm->score_last(tokens, mask).sum().backward();
  for (auto& p : rm->named_parameters()) {
    const bool trains = is_lora_name(p.key()) || p.key().rfind("score.", 0) == 0;
    EXPECT_EQ(p.value().requires_grad(), trains) << p.key();
    EXPECT_EQ(p.value().grad().defined(), trains) << p.key();
  }
}

TEST(Lora, MergedWeightsGiveTheAdaptedLogitsAndAdaptersOffTheBase) {
  for (Family f : {Family::GPT2, Family::Qwen3}) {
    torch::manual_seed(6);
    CausalLM m(cfg_of(f));
    auto [tokens, mask] = batch(3, 10, 41, 7);
    auto base = logits_of(m, tokens, mask);
    attach_lora(*m, info_of(3, 6, "all"));
    randomise_b(*m, 8);
    auto adapted = logits_of(m, tokens, mask);
    EXPECT_GT((adapted - base).abs().max().item<double>(), 1e-2) << "adapters must matter";
    {
      AdaptersOff off(*m);
      EXPECT_TRUE(torch::equal(logits_of(m, tokens, mask), base)) << family_name(f);
    }
    EXPECT_TRUE(torch::equal(logits_of(m, tokens, mask), adapted));

    std::map<std::string, torch::Tensor> ts;
    for (auto& p : m->named_parameters()) ts[p.key()] = p.value().detach().clone();
    merge_lora_tensors(ts, lora_info(*m)->opt, "test");
    for (const auto& [name, t] : ts) EXPECT_FALSE(is_lora_name(name)) << name;
    CausalLM plain(cfg_of(f));
    ModelFile mf;
    mf.tensors = ts;
    load_parameters(*plain, mf);
    const double diff = (logits_of(plain, tokens, mask) - adapted).abs().max().item<double>();
    EXPECT_LE(diff, 1e-5) << family_name(f);
  }
}

TEST(Lora, ActivationCheckpointingReplaysAdapterDropout) {
  std::vector<std::map<std::string, torch::Tensor>> grads;
  for (bool ckpt : {false, true}) {
    ModelConfig c = tiny_config(Family::Llama, 2);
    c.activation_checkpointing = ckpt;
    torch::manual_seed(9);
    CausalLM m(c);
    attach_lora(*m, info_of(4, 8, "all", /*dropout=*/0.3));
    randomise_b(*m, 10);
    m->train();
    auto [tokens, mask] = batch(2, 8, 41, 11);
    torch::manual_seed(12);
    m->forward(tokens, positions_from_mask(mask), mask).pow(2).mean().backward();
    std::map<std::string, torch::Tensor> g;
    for (auto& p : m->named_parameters())
      if (p.value().grad().defined()) g[p.key()] = p.value().grad().clone();
    grads.push_back(g);
  }
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (const auto& [name, g] : grads[0])
    EXPECT_TRUE(torch::allclose(g, grads[1].at(name), 1e-5, 1e-7)) << name;
}

TEST(Lora, ModelFilesHoldAdaptersAndReadBackMergedOrSeparate) {
  TempDir tmp("lora");
  const TokenizerInfo tok = TokenizerInfo::of(*load_tokenizer("byte"));
  ModelConfig c = tiny_config(Family::Llama, 2);
  c.vocab_size = 259;
  torch::manual_seed(13);
  CausalLM m(c);
  const std::string base_path = tmp.at("base.h5");
  save_model_h5(base_path, *m, c, tok, "causal_lm");
  ModelFile base = read_model_h5(base_path);
  LoraInfo info = info_of(2, 4, "q,k,v,o");
  info.base = base_path;
  info.base_fingerprint = base_fingerprint(base.tensors);
  attach_lora(*m, info);
  randomise_b(*m, 14);
  const std::string lora_path = tmp.at("lora.h5");
  save_model_h5(lora_path, *m, c, tok, "causal_lm");
  EXPECT_LT(std::filesystem::file_size(lora_path) * 4, std::filesystem::file_size(base_path));

  auto [tokens, mask] = batch(2, 6, 259, 15);
  auto adapted = logits_of(m, tokens, mask);
  ModelFile merged = read_model_h5(lora_path);
  EXPECT_TRUE(merged.lora.is_null());
  CausalLM plain(c);
  load_parameters(*plain, merged);
  EXPECT_LE((logits_of(plain, tokens, mask) - adapted).abs().max().item<double>(), 1e-5);

  ModelFile sep = read_model_h5(lora_path, LoraLoad::Separate);
  ASSERT_FALSE(sep.lora.is_null());
  EXPECT_EQ(sep.lora.at("targets"), "q,k,v,o");
  torch::manual_seed(99);  // other adapter init: the file must overwrite it
  CausalLM again(c);
  attach_lora(*again, info);
  load_parameters(*again, sep);
  EXPECT_TRUE(torch::equal(logits_of(again, tokens, mask), adapted));

  // The base changed or went missing: refused, naming both files.
  {
    torch::manual_seed(16);
    CausalLM other(c);
    save_model_h5(base_path, *other, c, tok, "causal_lm");
  }
  std::string e = error_of([&] { read_model_h5(lora_path); });
  EXPECT_NE(e.find("has changed since the adapters were trained"), std::string::npos) << e;
  EXPECT_NE(e.find(base_path), std::string::npos) << e;
  std::filesystem::remove(base_path);
  e = error_of([&] { read_model_h5(lora_path); });
  EXPECT_NE(e.find("which does not exist"), std::string::npos) << e;
  EXPECT_NE(e.find("merge-lora"), std::string::npos) << e;
}

}  // namespace
}  // namespace rlhf
