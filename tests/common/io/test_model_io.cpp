// model.h5, safetensors and the Hugging Face mapping: round trips (bit-identical) and the errors
// for corrupted or mismatched inputs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/core/check.h"
#include "common/core/h5.h"
#include "common/io/model_file.h"
#include "common/io/safetensors.h"
#include "common/tokenizer/tokenizer.h"
#include "support/test_support.h"

namespace fs = std::filesystem;

namespace rlhf {
namespace {

using rlhf::testing::error_of;

std::string tmp(const std::string& name) {
  auto d = fs::path(::testing::TempDir()) / "rlhf_model_io";
  fs::create_directories(d);
  return (d / name).string();
}

ModelConfig io_cfg(Family f, bool tie) {
  ModelConfig c;
  c.family = f;
  c.vocab_size = 259;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = f == Family::GPT2 ? 4 : 2;
  c.d_model = 32;
  c.d_ff = 40;
  c.max_seq_len = 48;
  c.tie_embeddings = tie;
  return c;
}

std::map<std::string, torch::Tensor> native_of(torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> out;
  for (auto& p : m.named_parameters()) out[p.key()] = p.value().detach().clone();
  return out;
}

#define EXPECT_ERROR_HAS(msg, ...)                                                  \
  do {                                                                              \
    std::string m__ = (msg);                                                        \
    EXPECT_FALSE(m__.empty()) << "expected an rlhf::Error";                         \
    for (const char* s__ : {__VA_ARGS__}) EXPECT_NE(m__.find(s__), std::string::npos) << m__; \
  } while (0)

TEST(ModelH5, SaveReadLoadRoundTrip) {
  torch::manual_seed(1);
  ModelConfig c = io_cfg(Family::Llama, false);
  CausalLM a(c);
  auto tok = load_tokenizer("byte");
  TokenizerInfo ti = TokenizerInfo::of(*tok);
  const std::string p = tmp("rt.h5");
  save_model_h5(p, *a, c, ti, "causal_lm", {{"note", "x"}, {"bias", 0.5}});
  ModelFile f = read_model_h5(p);
  EXPECT_EQ(f.kind, "causal_lm");
  EXPECT_EQ(f.cfg.to_json(), c.to_json());
  EXPECT_EQ(f.tok.to_json(), ti.to_json());
  EXPECT_EQ(f.tok.bos, 256);
  EXPECT_EQ(f.extra["bias"].get<double>(), 0.5);
  EXPECT_EQ(f.tensors.size(), a->named_parameters().size());
  torch::manual_seed(2);
  CausalLM b(c);
  load_parameters(*b, f);
  for (auto& q : a->named_parameters())
    EXPECT_TRUE(torch::equal(q.value(), b->named_parameters()[q.key()])) << q.key();
  H5File h = H5File::open_read(p);
  EXPECT_EQ(h.attr_int("format_version"), 1);
}

TEST(ModelH5, LoadErrorsNameFileTensorAndShapes) {
  torch::manual_seed(1);
  ModelConfig c = io_cfg(Family::GPT2, true);
  CausalLM lm(c);
  const std::string p = tmp("err.h5");
  save_model_h5(p, *lm, c, TokenizerInfo::of(*load_tokenizer("byte")), "causal_lm");
  ModelFile f = read_model_h5(p);

  ModelConfig wide = c;
  wide.d_ff = 44;
  CausalLM other(wide);
  EXPECT_ERROR_HAS(error_of([&] { load_parameters(*other, f); }), p.c_str(),
                   "transformer.h.0.mlp.c_fc.weight", "[40, 32]", "[44, 32]");

  ScalarModel rm(c);  // score.* missing from an LM file
  EXPECT_ERROR_HAS(error_of([&] { load_parameters(*rm, f); }), p.c_str(), "score.weight");
  load_parameters(*rm, f, {"score.weight", "score.bias"});
  EXPECT_TRUE(torch::equal(rm->trunk->token_embedding_weight(), lm->trunk->token_embedding_weight()));

  ModelFile g = f;  // an extra tensor is refused unless ignore_unexpected
  g.tensors["lm_head.weight"] = torch::zeros({259, 32});
  EXPECT_ERROR_HAS(error_of([&] { load_parameters(*lm, g); }), "lm_head.weight");
  load_parameters(*lm, g, {}, /*ignore_unexpected=*/true);

  ModelFile h = f;
  h.tensors.erase("transformer.ln_f.bias");
  EXPECT_ERROR_HAS(error_of([&] { load_parameters(*lm, h); }), "transformer.ln_f.bias");

  ModelFile n = f;  // a NaN weight is refused at load, the tensor named
  n.tensors["transformer.h.0.attn.c_proj.weight"] = n.tensors["transformer.h.0.attn.c_proj.weight"].clone();
  n.tensors["transformer.h.0.attn.c_proj.weight"][3][5] = std::nan("");
  EXPECT_ERROR_HAS(error_of([&] { load_parameters(*lm, n); }), p.c_str(), "transformer.h.0.attn.c_proj.weight",
                   "non-finite");
}

TEST(ModelH5, TruncatedAndForeignFiles) {
  torch::manual_seed(1);
  ModelConfig c = io_cfg(Family::GPT2, true);
  CausalLM lm(c);
  const std::string p = tmp("full.h5");
  save_model_h5(p, *lm, c, TokenizerInfo::of(*load_tokenizer("byte")), "causal_lm");
  const auto size = fs::file_size(p);
  const std::string t = tmp("truncated.h5");
  fs::copy_file(p, t, fs::copy_options::overwrite_existing);
  fs::resize_file(t, size / 2);
  EXPECT_ERROR_HAS(error_of([&] { read_model_h5(t); }), t.c_str());
  const std::string text = tmp("foreign.txt");
  std::ofstream(text) << "hello";
  EXPECT_ERROR_HAS(error_of([&] { read_model_h5(text); }), text.c_str());
  const std::string other = tmp("other.h5");
  {
    H5File h = H5File::create(other);
    h.write_tensor("x", torch::ones({2}));
  }
  EXPECT_ERROR_HAS(error_of([&] { read_model_h5(other); }), other.c_str(), "format_version");
  EXPECT_ERROR_HAS(error_of([&] { read_model_h5(tmp("nope.h5")); }), "nope.h5");
}

TEST(ModelH5, ResolveModelPath) {
  const fs::path run = tmp("run");
  fs::remove_all(run);
  fs::create_directories(run / "checkpoints" / "step_00000010");
  std::ofstream((run / "checkpoints" / "step_00000010" / "model.h5").string()) << "x";
  std::ofstream((run / "checkpoints" / "latest").string()) << "step_00000010\n";
  const std::string want = (run / "checkpoints" / "step_00000010" / "model.h5").string();
  EXPECT_EQ(resolve_model_path(run.string()), want);
  EXPECT_EQ(resolve_model_path((run / "checkpoints" / "step_00000010").string()), want);
  EXPECT_EQ(resolve_model_path(want), want);
  EXPECT_ERROR_HAS(error_of([&] { resolve_model_path((run / "missing").string()); }), "missing");
  fs::create_directories(run / "empty");
  EXPECT_ERROR_HAS(error_of([&] { resolve_model_path((run / "empty").string()); }), "empty");
  // A Hugging Face folder where a checkpoint is expected: the error gives the import command.
  const fs::path hf = run / "Qwen3-0.6B";
  fs::create_directories(hf);
  std::ofstream((hf / "config.json").string()) << "{}";
  std::ofstream((hf / "model.safetensors").string()) << "x";
  const std::string command = "`rlhf_convert from-hf --in " + hf.string() + " --out " + hf.string() + "-rlhf`";
  EXPECT_ERROR_HAS(error_of([&] { resolve_model_path(hf.string()); }),
                   "is a Hugging Face model folder, not a checkpoint: import it once with", command.c_str());
}

// ---- safetensors ----------------------------------------------------------------------------
// An independent writer for test files: header JSON given verbatim, raw data bytes appended.
void write_raw(const std::string& path, const std::string& header, const std::string& data,
               int64_t claimed_len = -1) {
  std::ofstream o(path, std::ios::binary | std::ios::trunc);
  uint64_t n = claimed_len >= 0 ? uint64_t(claimed_len) : header.size();
  for (int i = 0; i < 8; ++i) o.put(static_cast<char>((n >> (8 * i)) & 0xff));
  o << header << data;
}

TEST(Safetensors, ReadsAllFloatDtypes) {
  // 1.5 and -2.0 in each encoding, little-endian.
  std::string f32("\x00\x00\xc0\x3f\x00\x00\x00\xc0", 8);
  std::string f16("\x00\x3e\x00\xc0", 4);
  std::string bf16("\xc0\x3f\x00\xc0", 4);
  std::string f64("\x00\x00\x00\x00\x00\x00\xf8\x3f\x00\x00\x00\x00\x00\x00\x00\xc0", 16);
  std::string hdr = R"({"__metadata__":{"format":"pt"},)"
                    R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("b":{"dtype":"F16","shape":[1,2],"data_offsets":[8,12]},)"
                    R"("c":{"dtype":"BF16","shape":[2],"data_offsets":[12,16]},)"
                    R"("d":{"dtype":"F64","shape":[2,1],"data_offsets":[16,32]}})";
  const std::string p = tmp("dtypes.safetensors");
  write_raw(p, hdr, f32 + f16 + bf16 + f64);
  auto s = read_safetensors(p);
  auto want = torch::tensor({1.5f, -2.0f});
  EXPECT_TRUE(torch::equal(s.tensors.at("a"), want));
  EXPECT_TRUE(torch::equal(s.tensors.at("b"), want.view({1, 2})));
  EXPECT_TRUE(torch::equal(s.tensors.at("c"), want));
  EXPECT_TRUE(torch::equal(s.tensors.at("d"), want.view({2, 1})));
  EXPECT_EQ(s.tensors.at("b").scalar_type(), torch::kFloat);
  EXPECT_EQ(s.metadata.at("format"), "pt");
}

TEST(Safetensors, CorruptInputsGiveClearErrors) {
  const std::string p = tmp("bad.safetensors");
  std::string data(8, '\0');
  const std::string ok = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  write_raw(p, ok, data.substr(0, 5));  // truncated data
  EXPECT_ERROR_HAS(error_of([&] { read_safetensors(p); }), p.c_str(), "'w'");
  write_raw(p, ok, data, 1 << 30);  // header length beyond the file
  EXPECT_ERROR_HAS(error_of([&] { read_safetensors(p); }), p.c_str(), "header length");
  write_raw(p, R"({"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", data);
  EXPECT_ERROR_HAS(error_of([&] { read_safetensors(p); }), p.c_str(), "'w'", "I64");
  write_raw(p, R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data);
  EXPECT_ERROR_HAS(error_of([&] { read_safetensors(p); }), "'w'");
  write_raw(p, R"({"u":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
               R"("v":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})", data);
  EXPECT_ERROR_HAS(error_of([&] { read_safetensors(p); }), "overlapping", "'u'", "'v'");
  write_raw(p, "{not json", data);
  EXPECT_ERROR_HAS(error_of([&] { read_safetensors(p); }), "JSON");
  std::ofstream(p, std::ios::trunc) << "abc";
  EXPECT_ERROR_HAS(error_of([&] { read_safetensors(p); }), p.c_str());
}

class HfFamily : public ::testing::TestWithParam<std::pair<Family, bool>> {};

TEST_P(HfFamily, ExportImportBitIdentical) {
  auto [fam, tie] = GetParam();
  torch::manual_seed(3);
  ModelConfig c = io_cfg(fam, tie);
  CausalLM m(c);
  auto native = native_of(*m);
  const std::string p = tmp(family_name(fam) + (tie ? "_tied" : "_untied") + ".safetensors");
  write_safetensors(p, tensors_to_hf(c, native), {{"format", "pt"}});
  auto back = tensors_from_hf(c, read_safetensors(p).tensors, p);
  ASSERT_EQ(back.size(), native.size());
  for (auto& [n, t] : native) {
    ASSERT_TRUE(back.count(n)) << n;
    EXPECT_TRUE(torch::equal(back[n], t)) << n;
  }
  ModelConfig c2 = config_from_hf(config_to_hf(c, {256, 257}));
  c2.dropout = c.dropout;
  EXPECT_EQ(c2.to_json(), c.to_json());
}

INSTANTIATE_TEST_SUITE_P(Families, HfFamily,
                         ::testing::Values(std::make_pair(Family::GPT2, true),
                                           std::make_pair(Family::Llama, true),
                                           std::make_pair(Family::Llama, false)));

TEST(HfMapping, Gpt2Conv1dAndMissingPrefix) {
  torch::manual_seed(4);
  ModelConfig c = io_cfg(Family::GPT2, true);
  CausalLM m(c);
  auto native = native_of(*m);
  // Build an HF GPT2Model-style dict by hand: no "transformer." prefix, Conv1D [in, out],
  // the causal-mask buffer, and a tied lm_head copy.
  std::map<std::string, torch::Tensor> hf;
  for (auto& [n, t] : native) {
    std::string k = n.substr(std::string("transformer.").size());
    bool conv = k.find("c_attn.weight") != std::string::npos || k.find("c_proj.weight") != std::string::npos ||
                k.find("c_fc.weight") != std::string::npos;
    hf[k] = conv ? t.t().contiguous() : t;
  }
  hf["h.0.attn.bias"] = torch::ones({1, 1, 48, 48});
  hf["lm_head.weight"] = native["transformer.wte.weight"];
  auto back = tensors_from_hf(c, hf, "hand");
  for (auto& [n, t] : native) EXPECT_TRUE(torch::equal(back.at(n), t)) << n;
  EXPECT_EQ(native["transformer.h.0.attn.c_attn.weight"].sizes(), torch::IntArrayRef({96, 32}));

  auto bad = hf;  // Conv1D given in Linear layout (not transposed)
  bad["h.1.mlp.c_fc.weight"] = native["transformer.h.1.mlp.c_fc.weight"];
  EXPECT_ERROR_HAS(error_of([&] { tensors_from_hf(c, bad, "file.safetensors"); }),
                   "file.safetensors", "h.1.mlp.c_fc.weight", "[40, 32]");
  bad = hf;
  bad["ln_f.bias"] = torch::zeros({31});
  EXPECT_ERROR_HAS(error_of([&] { tensors_from_hf(c, bad, "f"); }), "ln_f.bias", "[31]", "[32]");
  bad = hf;
  bad.erase("h.1.ln_2.weight");
  EXPECT_ERROR_HAS(error_of([&] { tensors_from_hf(c, bad, "f"); }), "transformer.h.1.ln_2.weight");
  bad = hf;
  bad["h.0.attn.q_proj.weight"] = torch::zeros({2, 2});
  EXPECT_ERROR_HAS(error_of([&] { tensors_from_hf(c, bad, "f"); }), "h.0.attn.q_proj.weight");
}

TEST(HfMapping, ConfigFieldsAndErrors) {
  nlohmann::json g = {{"model_type", "gpt2"}, {"n_embd", 768}, {"n_layer", 12}, {"n_head", 12},
                      {"n_positions", 1024}, {"vocab_size", 50257}, {"layer_norm_epsilon", 1e-5},
                      {"n_inner", nullptr}, {"activation_function", "gelu_new"}};
  ModelConfig c = config_from_hf(g);
  EXPECT_EQ(c.family, Family::GPT2);
  EXPECT_EQ(c.d_ff, 3072);
  EXPECT_EQ(c.max_seq_len, 1024);
  EXPECT_TRUE(c.tie_embeddings);
  nlohmann::json l = {{"model_type", "llama"}, {"hidden_size", 64}, {"intermediate_size", 172},
                      {"num_attention_heads", 8}, {"num_key_value_heads", 4},
                      {"num_hidden_layers", 5}, {"max_position_embeddings", 512},
                      {"rms_norm_eps", 1e-5}, {"rope_theta", 500000.0},
                      {"tie_word_embeddings", true}, {"vocab_size", 512}};
  c = config_from_hf(l);
  EXPECT_EQ(c.n_kv_head, 4);
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.d_ff, 172);
  auto bad = l;
  bad["model_type"] = "falcon";
  EXPECT_ERROR_HAS(error_of([&] { config_from_hf(bad, "x/config.json"); }), "x/config.json", "falcon");
  bad = l;
  bad.erase("hidden_size");
  EXPECT_ERROR_HAS(error_of([&] { config_from_hf(bad); }), "hidden_size");
  bad = l;
  bad["rope_scaling"] = {{"type", "linear"}};
  EXPECT_ERROR_HAS(error_of([&] { config_from_hf(bad); }), "rope_scaling");
  auto j = config_to_hf(c, {1, 2});
  EXPECT_EQ(j["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(j["num_key_value_heads"], 4);
  EXPECT_EQ(j["eos_token_id"], 2);
}

}  // namespace
}  // namespace rlhf
