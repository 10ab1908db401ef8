// Hugging Face families through from-hf's code (io/hf_folder.h): for llama (llama3 and linear
// rope scaling, attention/mlp biases, explicit head_dim), mistral, qwen2 (q/k/v biases) and qwen3
// (q/k norm, head_dim != d_model / n_head) the test writes HF-named tensors of a tiny config and
// a config.json of its own (single file, sharded with an index, bf16 and fp16 variants), imports
// the folder and checks our forward against an independent double-precision per-head loop
// written here. Also: the KV-cache path, export (to-hf) round trips, the sequence-classification
// export's score head, and the errors for bad folders.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "common/io/hf_config.h"
#include "common/io/hf_folder.h"
#include "common/io/safetensors.h"
#include "support/test_support.h"

namespace fs = std::filesystem;

namespace rlhf {
namespace {

using rlhf::testing::error_of;
using rlhf::testing::TempDir;
using TensorMap = std::map<std::string, torch::Tensor>;

// One tiny HF model, described the way HF describes it.
struct Case {
  std::string name, model_type;
  int64_t hidden = 32, heads = 4, kv_heads = 2, head_dim = 8, ffn = 40, vocab = 53, layers = 2;
  bool tied = false, qkv_bias = false, o_bias = false, mlp_bias = false, qk_norm = false;
  std::string rope = "default";  // default | linear | llama3
  bool rope_parameters_form = false;  // transformers 5 "rope_parameters" instead of rope_scaling
  torch::ScalarType stored = torch::kFloat;
  int shards = 1;
};

nlohmann::json hf_config(const Case& k) {
  nlohmann::json j = {{"model_type", k.model_type}, {"architectures", {"X"}},
                      {"hidden_size", k.hidden}, {"intermediate_size", k.ffn},
                      {"num_attention_heads", k.heads}, {"num_key_value_heads", k.kv_heads},
                      {"num_hidden_layers", k.layers}, {"vocab_size", k.vocab},
                      {"max_position_embeddings", 128}, {"rms_norm_eps", 1e-5},
                      {"tie_word_embeddings", k.tied}, {"hidden_act", "silu"},
                      {"torch_dtype", "float32"}, {"transformers_version", "4.46.0"},
                      {"bos_token_id", 1}, {"eos_token_id", 2}, {"use_cache", true},
                      {"initializer_range", 0.02}, {"attention_dropout", 0.0}};
  if (k.model_type != "qwen2" || k.head_dim != k.hidden / k.heads) j["head_dim"] = k.head_dim;
  if (k.model_type == "llama") {
    j["attention_bias"] = k.qkv_bias;
    j["mlp_bias"] = k.mlp_bias;
    j["pretraining_tp"] = 1;
  }
  if (k.model_type == "qwen3") j["attention_bias"] = k.qkv_bias;
  if (k.model_type == "qwen2" || k.model_type == "qwen3") {
    j["use_sliding_window"] = false;
    j["sliding_window"] = 4096;  // ignored while use_sliding_window is false
    j["max_window_layers"] = 28;
  }
  if (k.model_type == "mistral") j["sliding_window"] = 128;
  nlohmann::json r = {{"rope_type", k.rope}};
  if (k.rope == "linear") r["factor"] = 4.0;
  if (k.rope == "llama3")
    r.update(nlohmann::json{{"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                            {"original_max_position_embeddings", 256}});
  if (k.rope_parameters_form) {
    r["rope_theta"] = 10000.0;
    j["rope_parameters"] = r;
  } else {
    j["rope_theta"] = 10000.0;
    j["rope_scaling"] = k.rope == "default" ? nlohmann::json(nullptr) : r;
  }
  return j;
}

// Random HF-named tensors, already rounded to the stored dtype (so the reference sees exactly
// what the importer reads).
TensorMap hf_tensors(const Case& k) {
  TensorMap t;
  auto w = [&](const std::string& n, std::vector<int64_t> s, double scale, double shift = 0) {
    t[n] = (torch::randn(s, torch::kFloat) * scale + shift).to(k.stored).to(torch::kFloat);
  };
  const int64_t C = k.hidden, D = k.head_dim, Q = k.heads * D, KV = k.kv_heads * D, F = k.ffn;
  w("model.embed_tokens.weight", {k.vocab, C}, 1.0);
  w("model.norm.weight", {C}, 0.1, 1.0);
  if (!k.tied) w("lm_head.weight", {k.vocab, C}, 0.3);
  for (int64_t l = 0; l < k.layers; ++l) {
    const std::string b = "model.layers." + std::to_string(l) + ".", a = b + "self_attn.";
    w(b + "input_layernorm.weight", {C}, 0.1, 1.0);
    w(b + "post_attention_layernorm.weight", {C}, 0.1, 1.0);
    w(a + "q_proj.weight", {Q, C}, 0.3);
    w(a + "k_proj.weight", {KV, C}, 0.3);
    w(a + "v_proj.weight", {KV, C}, 0.3);
    w(a + "o_proj.weight", {C, Q}, 0.3);
    if (k.qkv_bias) {
      w(a + "q_proj.bias", {Q}, 0.3);
      w(a + "k_proj.bias", {KV}, 0.3);
      w(a + "v_proj.bias", {KV}, 0.3);
    }
    if (k.o_bias) w(a + "o_proj.bias", {C}, 0.3);
    if (k.qk_norm) {
      w(a + "q_norm.weight", {D}, 0.2, 1.0);
      w(a + "k_norm.weight", {D}, 0.2, 1.0);
    }
    w(b + "mlp.gate_proj.weight", {F, C}, 0.3);
    w(b + "mlp.up_proj.weight", {F, C}, 0.3);
    w(b + "mlp.down_proj.weight", {C, F}, 0.3);
    if (k.mlp_bias) {
      w(b + "mlp.gate_proj.bias", {F}, 0.3);
      w(b + "mlp.up_proj.bias", {F}, 0.3);
      w(b + "mlp.down_proj.bias", {C}, 0.3);
    }
  }
  return t;
}

void write_json(const std::string& path, const nlohmann::json& j) { std::ofstream(path) << j.dump(2); }

// The folder as an HF save would lay it out: one file, or `shards` files + index.json.
void write_folder(const std::string& dir, const Case& k, const TensorMap& t) {
  fs::create_directories(dir);
  write_json(dir + "/config.json", hf_config(k));
  if (k.shards == 1) {
    write_safetensors(dir + "/model.safetensors", t, {{"format", "pt"}}, k.stored);
    return;
  }
  std::vector<TensorMap> parts(k.shards);
  nlohmann::json map;
  int i = 0;
  for (const auto& [n, x] : t) {
    const int s = i++ % k.shards;
    parts[s][n] = x;
    map[n] = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, k.shards);
  }
  for (int s = 0; s < k.shards; ++s)
    write_safetensors(dir + fmt::format("/model-{:05d}-of-{:05d}.safetensors", s + 1, k.shards),
                      parts[s], {}, k.stored);
  write_json(dir + "/model.safetensors.index.json",
             {{"metadata", {{"total_size", 0}}}, {"weight_map", map}});
}

// ---- the independent reference (double precision, one head at a time) -----------------------
torch::Tensor rms(const torch::Tensor& x, const torch::Tensor& w) {  // [T, n] -> [T, n]
  return x / (x.pow(2).mean(-1, true) + 1e-5).sqrt() * w;
}

std::vector<double> inv_freqs(const Case& k, bool apply_scaling) {
  std::vector<double> f;
  const double pi = 3.14159265358979323846;
  for (int64_t i = 0; i < k.head_dim / 2; ++i) {
    double v = std::pow(10000.0, -2.0 * i / k.head_dim);
    if (apply_scaling && k.rope == "linear") v /= 4.0;
    if (apply_scaling && k.rope == "llama3") {  // Llama 3.1: factor 8, low 1, high 4, original 256
      const double wl = 2 * pi / v, lo = 256.0 / 1.0, hi = 256.0 / 4.0;
      if (wl > lo) v /= 8.0;
      else if (wl >= hi) {
        const double s = (256.0 / wl - 1.0) / (4.0 - 1.0);
        v = (1 - s) * v / 8.0 + s * v;
      }
    }
    f.push_back(v);
  }
  return f;
}

torch::Tensor rope(const torch::Tensor& x /*[T, D]*/, const std::vector<int64_t>& pos,
                   const std::vector<double>& f) {
  const int64_t T = x.size(0), half = x.size(1) / 2;
  auto out = x.clone();
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double a = pos[t] * f[i], x1 = x[t][i].item<double>(), x2 = x[t][i + half].item<double>();
      out[t][i] = x1 * std::cos(a) - x2 * std::sin(a);
      out[t][i + half] = x2 * std::cos(a) + x1 * std::sin(a);
    }
  return out;
}

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  auto s = q.matmul(k.t()) / std::sqrt(static_cast<double>(q.size(1)));  // [T, T]
  auto allowed = torch::ones({q.size(0), q.size(0)}, torch::kBool).tril();
  return s.masked_fill(allowed.logical_not(), -INFINITY).softmax(-1).matmul(v);
}

torch::Tensor reference_logits(const Case& k, TensorMap P, const std::vector<int64_t>& tokens,
                               const std::vector<int64_t>& pos, bool apply_scaling = true) {
  for (auto& [n, t] : P) t = t.to(torch::kDouble);
  const auto f = inv_freqs(k, apply_scaling);
  const int64_t D = k.head_dim, T = static_cast<int64_t>(tokens.size());
  auto x = P["model.embed_tokens.weight"].index_select(0, torch::tensor(tokens));  // [T, C]
  for (int64_t l = 0; l < k.layers; ++l) {
    const std::string b = "model.layers." + std::to_string(l) + ".";
    auto lin = [&](const torch::Tensor& in, const std::string& n) {
      auto y = in.matmul(P[b + n + ".weight"].t());
      return P.count(b + n + ".bias") ? y + P[b + n + ".bias"] : y;
    };
    auto h = rms(x, P[b + "input_layernorm.weight"]);
    auto q = lin(h, "self_attn.q_proj"), kk = lin(h, "self_attn.k_proj"), v = lin(h, "self_attn.v_proj");
    std::vector<torch::Tensor> heads;
    for (int64_t hh = 0; hh < k.heads; ++hh) {
      const int64_t g = hh / (k.heads / k.kv_heads);
      auto qh = q.narrow(1, hh * D, D), kh = kk.narrow(1, g * D, D);
      if (k.qk_norm) {
        qh = rms(qh, P[b + "self_attn.q_norm.weight"]);
        kh = rms(kh, P[b + "self_attn.k_norm.weight"]);
      }
      heads.push_back(causal_attention(rope(qh, pos, f), rope(kh, pos, f), v.narrow(1, g * D, D)));
    }
    x = x + lin(torch::cat(heads, 1), "self_attn.o_proj");
    auto m = rms(x, P[b + "post_attention_layernorm.weight"]);
    auto gate = lin(m, "mlp.gate_proj");
    x = x + lin(gate * torch::sigmoid(gate) * lin(m, "mlp.up_proj"), "mlp.down_proj");
  }
  x = rms(x, P["model.norm.weight"]);
  EXPECT_EQ(x.size(0), T);
  return x.matmul((k.tied ? P["model.embed_tokens.weight"] : P["lm_head.weight"]).t());  // [T, V]
}

std::vector<Case> cases() {
  std::vector<Case> v;
  Case c;
  c = Case{};  // llama 3.1-style: llama3 scaling, biases everywhere, head_dim 16 != 32 / 4
  c.name = "llama_llama3_bias", c.model_type = "llama", c.head_dim = 16, c.rope = "llama3";
  c.qkv_bias = c.o_bias = c.mlp_bias = true;
  v.push_back(c);
  c = Case{};  // linear scaling in the transformers-5 rope_parameters form, tied, 3 shards
  c.name = "llama_linear_sharded", c.model_type = "llama", c.rope = "linear", c.tied = true;
  c.rope_parameters_form = true, c.shards = 3, c.kv_heads = 4;
  v.push_back(c);
  c = Case{};
  c.name = "mistral_bf16", c.model_type = "mistral", c.stored = torch::kBFloat16;
  v.push_back(c);
  c = Case{};
  c.name = "qwen2_bias_bf16_sharded", c.model_type = "qwen2", c.qkv_bias = true, c.tied = true;
  c.stored = torch::kBFloat16, c.shards = 2;
  v.push_back(c);
  c = Case{};
  c.name = "qwen3_qknorm_fp16", c.model_type = "qwen3", c.qk_norm = true, c.head_dim = 16;
  c.stored = torch::kHalf, c.kv_heads = 1;
  v.push_back(c);
  return v;
}

class HfFamilies : public ::testing::TestWithParam<Case> {};

TEST_P(HfFamilies, ImportMatchesIndependentReference) {
  const Case k = GetParam();
  torch::manual_seed(11);
  TempDir dir("hf_" + k.name);
  const TensorMap t = hf_tensors(k);
  write_folder(dir.at("hf"), k, t);
  ModelFile f = import_hf_folder(dir.at("hf"));
  EXPECT_EQ(family_name(f.cfg.family), k.model_type);
  EXPECT_EQ(f.cfg.head_dim(), k.head_dim);
  CausalLM m(f.cfg);
  load_parameters(*m, f);
  m->eval();
  torch::NoGradGuard ng;
  const std::vector<int64_t> tokens = {3, 17, 5, 52, 0, 9, 31, 44, 12};
  std::vector<int64_t> pos;
  for (size_t i = 0; i < tokens.size(); ++i) pos.push_back(100 + static_cast<int64_t>(i));
  auto tok = torch::tensor(tokens).unsqueeze(0), p = torch::tensor(pos).unsqueeze(0);  // [1, T]
  auto ours = m->forward(tok, p, torch::Tensor())[0].to(torch::kDouble);               // [T, V]
  auto ref = reference_logits(k, t, tokens, pos);
  const double diff = (ours - ref).abs().max().item<double>();
  EXPECT_LT(diff, 1e-4) << k.name << ": max |dlogit| " << diff << ", max |logit| "
                        << ref.abs().max().item<double>();
  if (k.rope != "default")  // the scaling matters at these positions: the test can fail
    EXPECT_GT((ours - reference_logits(k, t, tokens, pos, false)).abs().max().item<double>(), 1e-2);
  // KV cache: the prefix, then one token at a time, gives the same last logits.
  const int64_t T = tok.size(1);
  KVCache cache = KVCache::allocate(f.cfg, 1, T, torch::kFloat);
  m->forward(tok.narrow(1, 0, T - 2), p.narrow(1, 0, T - 2), torch::Tensor(), &cache, 0);
  m->forward(tok.narrow(1, T - 2, 1), p.narrow(1, T - 2, 1), torch::Tensor(), &cache, T - 2);
  auto last = m->forward(tok.narrow(1, T - 1, 1), p.narrow(1, T - 1, 1), torch::Tensor(), &cache, T - 1);
  EXPECT_LT((last[0][0].to(torch::kDouble) - ours[T - 1]).abs().max().item<double>(), 1e-4);
}

TEST_P(HfFamilies, ExportRoundTripIsBitIdentical) {
  const Case k = GetParam();
  torch::manual_seed(12);
  TempDir dir("hfx_" + k.name);
  const TensorMap t = hf_tensors(k);
  write_folder(dir.at("hf"), k, t);
  ModelFile f = import_hf_folder(dir.at("hf"));
  HfExportOptions o;
  o.dtype = k.stored == torch::kBFloat16 ? torch::kBFloat16 : torch::kFloat;
  o.max_shard_bytes = k.shards > 1 ? 4096 : 0;
  export_hf_folder(f, dir.at("out"), o);
  EXPECT_EQ(fs::exists(dir.at("out/model.safetensors.index.json")), k.shards > 1);
  ModelFile g = import_hf_folder(dir.at("out"));
  EXPECT_EQ(g.cfg.to_json(), f.cfg.to_json());
  ASSERT_EQ(g.tensors.size(), f.tensors.size());
  for (const auto& [n, x] : f.tensors) EXPECT_TRUE(torch::equal(g.tensors.at(n), x)) << n;
  auto back = read_hf_weights(dir.at("out")).tensors;
  ASSERT_EQ(back.size(), t.size());
  for (const auto& [n, x] : t) EXPECT_TRUE(torch::equal(back.at(n), x)) << n;
  std::ifstream cf(dir.at("out/config.json"));
  auto j = nlohmann::json::parse(cf);
  EXPECT_EQ(j["model_type"], k.model_type);
  EXPECT_EQ(j["torch_dtype"], o.dtype == torch::kFloat ? "float32" : "bfloat16");
}

INSTANTIATE_TEST_SUITE_P(Families, HfFamilies, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

#define EXPECT_ERROR_HAS(msg, ...)                                                            \
  do {                                                                                        \
    std::string m__ = (msg);                                                                  \
    for (const char* s__ : {__VA_ARGS__}) EXPECT_NE(m__.find(s__), std::string::npos) << m__; \
  } while (0)

TEST(HfFamiliesErrors, BadConfigsNameFileAndKey) {
  Case k = cases()[0];
  const std::string w = "dir/config.json";
  auto j = hf_config(k);
  j["rope_scaling"]["rope_type"] = "yarn";
  EXPECT_ERROR_HAS(error_of([&] { config_from_hf(j, w); }), w.c_str(), "rope_scaling", "yarn");
  j = hf_config(k);
  j["rope_scaling"]["beta_fast"] = 32;
  EXPECT_ERROR_HAS(error_of([&] { config_from_hf(j, w); }), w.c_str(), "rope_scaling.beta_fast");
  j = hf_config(k);
  j["quantization_config"] = {{"bits", 4}};
  EXPECT_ERROR_HAS(error_of([&] { config_from_hf(j, w); }), w.c_str(), "quantization_config");
  j = hf_config(k);
  j["pretraining_tp"] = 2;
  EXPECT_ERROR_HAS(error_of([&] { config_from_hf(j, w); }), w.c_str(), "pretraining_tp");
  Case m = cases()[2];
  j = hf_config(m);
  j["sliding_window"] = 64;  // < max_position_embeddings 128
  EXPECT_ERROR_HAS(error_of([&] { config_from_hf(j, w); }), w.c_str(), "sliding_window");
  j = hf_config(m);
  j["attention_bias"] = true;  // not a Mistral key
  EXPECT_ERROR_HAS(error_of([&] { config_from_hf(j, w); }), w.c_str(), "attention_bias");
  Case q = cases()[3];
  j = hf_config(q);
  j["use_sliding_window"] = true;
  EXPECT_ERROR_HAS(error_of([&] { config_from_hf(j, w); }), w.c_str(), "use_sliding_window");
}

TEST(HfFamiliesErrors, BadFoldersNameFileAndTensor) {
  torch::manual_seed(13);
  Case k = cases()[1];  // sharded
  TempDir dir("hf_bad");
  const TensorMap t = hf_tensors(k);
  write_folder(dir.at("a"), k, t);
  fs::remove(dir.at("a/model-00002-of-00003.safetensors"));
  EXPECT_ERROR_HAS(error_of([&] { import_hf_folder(dir.at("a")); }),
                   "model.safetensors.index.json", "model-00002-of-00003.safetensors");
  k.shards = 1;
  TensorMap bad = t;
  bad["model.layers.1.mlp.up_proj.weight"] = torch::zeros({k.ffn + 1, k.hidden});
  write_folder(dir.at("b"), k, bad);
  EXPECT_ERROR_HAS(error_of([&] { import_hf_folder(dir.at("b")); }), "b/model.safetensors",
                   "model.layers.1.mlp.up_proj.weight", "[41, 32]");
  bad = t;
  bad.erase("model.layers.0.self_attn.k_proj.weight");
  write_folder(dir.at("c"), k, bad);
  EXPECT_ERROR_HAS(error_of([&] { import_hf_folder(dir.at("c")); }), "c/model.safetensors",
                   "model.layers.0.self_attn.k_proj.weight");
  write_folder(dir.at("d"), k, t);
  auto j = hf_config(k);
  j["some_new_switch"] = true;
  write_json(dir.at("d/config.json"), j);
  EXPECT_ERROR_HAS(error_of([&] { import_hf_folder(dir.at("d")); }), "d/config.json",
                   "some_new_switch");
}

TEST(HfFamiliesExport, ScalarModelExportsAsSequenceClassification) {
  torch::manual_seed(14);
  ModelConfig c = ModelConfig::defaults_for(Family::Qwen2);
  c.vocab_size = 53, c.n_layer = 1, c.n_head = 4, c.n_kv_head = 2, c.d_model = 32, c.d_ff = 40;
  ScalarModel rm(c);
  ModelFile f;
  f.cfg = c;
  f.kind = "scalar";
  f.tok.pad = 7;
  f.tok.eos = 2;
  for (auto& p : rm->named_parameters()) f.tensors[p.key()] = p.value().detach().clone();
  TempDir dir("hf_rm");
  export_hf_folder(f, dir.at("zero"));  // zero bias (fresh head): exports as is
  std::ifstream in(dir.at("zero/config.json"));
  auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["architectures"][0], "Qwen2ForSequenceClassification");
  EXPECT_EQ(j["pad_token_id"], 7);
  EXPECT_EQ(j["id2label"].size(), 1u);
  EXPECT_FALSE(j.contains("rlhf_score_bias"));
  auto w = read_hf_weights(dir.at("zero")).tensors;
  EXPECT_TRUE(torch::equal(w.at("score.weight"), f.tensors.at("score.weight")));
  EXPECT_FALSE(w.count("score.bias"));
  EXPECT_FALSE(w.count("lm_head.weight"));
  f.tensors["score.bias"] = torch::full({1}, 0.25);
  EXPECT_ERROR_HAS(error_of([&] { export_hf_folder(f, dir.at("b")); }), "score.bias",
                   "--drop-score-bias");
  HfExportOptions o;
  o.drop_score_bias = true;
  export_hf_folder(f, dir.at("b"), o);
  std::ifstream in2(dir.at("b/config.json"));
  EXPECT_EQ(nlohmann::json::parse(in2)["rlhf_score_bias"], 0.25);
}

TEST(HfFamiliesConfig, OurJsonRoundTripAndValidation) {
  for (const Case& k : cases()) {
    ModelConfig c = config_from_hf(hf_config(k));
    EXPECT_EQ(ModelConfig::from_json(c.to_json()).to_json(), c.to_json()) << k.name;
    ModelConfig back = config_from_hf(config_to_hf(c));
    EXPECT_EQ(back.to_json(), c.to_json()) << k.name;
  }
  ModelConfig c = ModelConfig::defaults_for(Family::Qwen2);
  c.qkv_bias = false;
  EXPECT_ERROR_HAS(error_of([&] { c.validate(); }), "qwen2", "qkv_bias");
  c = ModelConfig::defaults_for(Family::Llama);
  c.qk_norm = true;
  EXPECT_ERROR_HAS(error_of([&] { c.validate(); }), "qk_norm", "llama");
  c = ModelConfig::defaults_for(Family::Llama);
  c.rope_scaling.type = "yarn";
  EXPECT_ERROR_HAS(error_of([&] { c.validate(); }), "rope_scaling", "yarn");
  auto j = ModelConfig::defaults_for(Family::Qwen3).to_json();
  EXPECT_TRUE(ModelConfig::from_json({{"family", "qwen3"}}).qk_norm);
  EXPECT_TRUE(ModelConfig::from_json({{"family", "qwen2"}}).qkv_bias);
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}, {"beta", 1}};
  EXPECT_ERROR_HAS(error_of([&] { ModelConfig::from_json(j); }), "rope_scaling.beta");
}

}  // namespace
}  // namespace rlhf
