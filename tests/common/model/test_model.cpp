// Model tests: config, HF parameter names, attention paths vs a naive loop, both families vs an
// independent per-head reference forward (double precision), padding invariance, score_last,
// activation checkpointing gradients, the reward model's shared-prompt scoring.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "common/core/check.h"
#include "common/core/compat.h"
#include "common/model/model.h"

namespace rlhf {
namespace {

ModelConfig small_cfg(Family f, int64_t n_kv_head = 4, bool tie = true) {
  ModelConfig c;
  c.family = f;
  c.vocab_size = 37;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = f == Family::GPT2 ? 4 : n_kv_head;
  c.d_model = 32;
  c.d_ff = 48;
  c.max_seq_len = 64;
  c.tie_embeddings = tie;
  c.rope_theta = 500.0;
  return c;
}

std::map<std::string, torch::Tensor> params_of(torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> out;
  for (auto& p : m.named_parameters()) out[p.key()] = p.value().detach().to(torch::kDouble);
  return out;
}

TEST(ModelConfig, JsonRoundTripAndErrors) {
  ModelConfig c = small_cfg(Family::Llama, 2, false);
  c.dropout = 0.1;
  ModelConfig d = ModelConfig::from_json(c.to_json());
  EXPECT_EQ(d.to_json(), c.to_json());
  EXPECT_EQ(d.family, Family::Llama);
  EXPECT_EQ(d.n_kv_head, 2);
  EXPECT_FALSE(d.tie_embeddings);
  auto j = c.to_json();
  j["n_layers"] = 3;
  EXPECT_THROW(ModelConfig::from_json(j), Error);
  j = c.to_json();
  j["d_model"] = "big";
  try {
    ModelConfig::from_json(j);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("d_model"), std::string::npos) << e.what();
  }
  j = c.to_json();
  j["n_kv_head"] = 3;  // 4 % 3 != 0
  EXPECT_THROW(ModelConfig::from_json(j), Error);
  EXPECT_THROW(parse_family("bert"), Error);
  ModelConfig g = small_cfg(Family::GPT2);
  g.n_kv_head = 2;
  EXPECT_THROW(g.validate(), Error);
}

TEST(Model, HuggingFaceParameterNames) {
  CausalLM gpt(small_cfg(Family::GPT2));
  std::set<std::string> names;
  for (auto& p : gpt->named_parameters()) names.insert(p.key());
  std::set<std::string> want = {"transformer.wte.weight", "transformer.wpe.weight",
                                "transformer.ln_f.weight", "transformer.ln_f.bias"};
  for (int i = 0; i < 2; ++i)
    for (std::string s : {"ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                          "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                          "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"})
      want.insert("transformer.h." + std::to_string(i) + "." + s);
  EXPECT_EQ(names, want);

  CausalLM llama(small_cfg(Family::Llama, 2, false));
  names.clear();
  for (auto& p : llama->named_parameters()) names.insert(p.key());
  want = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"};
  for (int i = 0; i < 2; ++i)
    for (std::string s : {"self_attn.q_proj.weight", "self_attn.k_proj.weight",
                          "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                          "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
                          "input_layernorm.weight", "post_attention_layernorm.weight"})
      want.insert("model.layers." + std::to_string(i) + "." + s);
  EXPECT_EQ(names, want);
  auto p = llama->named_parameters();
  EXPECT_EQ(p["model.layers.0.self_attn.k_proj.weight"].sizes(), torch::IntArrayRef({16, 32}));

  ScalarModel rm(small_cfg(Family::GPT2));
  auto rp = rm->named_parameters();
  EXPECT_TRUE(rp.contains("score.weight") && rp.contains("score.bias"));
  EXPECT_FALSE(rp.contains("lm_head.weight"));
}

TEST(Model, InitialisationStatistics) {
  torch::manual_seed(0);
  ModelConfig c = small_cfg(Family::GPT2);
  c.n_layer = 8;
  c.d_model = 128;
  c.d_ff = 512;
  CausalLM m(c);
  auto p = m->named_parameters();
  EXPECT_NEAR(p["transformer.wte.weight"].std().item<double>(), 0.02, 0.002);
  EXPECT_NEAR(p["transformer.h.0.mlp.c_proj.weight"].std().item<double>(), 0.02 / 4.0, 0.0005);
  EXPECT_EQ(p["transformer.h.0.attn.c_attn.bias"].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(p["transformer.ln_f.weight"].sum().item<double>(), 128.0);
}

TEST(Model, PositionsAndLastIndex) {
  auto mask = torch::tensor({0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
                            torch::kBool).view({4, 5});
  auto pos = positions_from_mask(mask);
  auto want = torch::tensor({0, 0, 0, 1, 2, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
                            torch::kLong).view({4, 5});
  EXPECT_TRUE(torch::equal(pos, want));
  auto last = last_true_index(mask);
  EXPECT_TRUE(torch::equal(last, torch::tensor({4, 4, 0, 4}, torch::kLong)));
}

// Naive reference: explicit loops over batch, heads, query rows.
torch::Tensor naive_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const torch::Tensor& attention_mask /*[B,Tk]*/) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), D = q.size(3);
  auto out = torch::zeros_like(q);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Tq; ++i) {
        std::vector<int64_t> keys;
        for (int64_t j = 0; j <= i + (Tk - Tq); ++j)
          if (attention_mask[b][j].item<bool>()) keys.push_back(j);
        if (keys.empty())
          for (int64_t j = 0; j < Tk; ++j) keys.push_back(j);  // documented pad-row rule
        std::vector<double> s;
        double mx = -1e30;
        for (auto j : keys) {
          double d = (q[b][h][i] * k[b][h][j]).sum().item<double>() / std::sqrt(double(D));
          s.push_back(d);
          mx = std::max(mx, d);
        }
        double z = 0;
        for (auto& x : s) z += (x = std::exp(x - mx));
        auto acc = torch::zeros({D}, q.options());
        for (size_t n = 0; n < keys.size(); ++n) acc += v[b][h][keys[n]] * (s[n] / z);
        out[b][h][i] = acc;
      }
  return out;
}

TEST(Attention, MatchesNaiveLoopAndForceMath) {
  torch::manual_seed(1);
  const int64_t B = 3, H = 2, Tq = 4, Tk = 6, D = 8;
  auto q = torch::randn({B, H, Tq, D}), k = torch::randn({B, H, Tk, D}), v = torch::randn({B, H, Tk, D});
  auto km = torch::ones({B, Tk}, torch::kBool);
  km.index_put_({0, torch::indexing::Slice(0, 4)}, false);  // row 0: query 0 sees only pads
  km.index_put_({1, 0}, false);
  auto mask = km.view({B, 1, 1, Tk});
  auto ref = naive_attention(q, k, v, km);
  auto def = compat::attention(q, k, v, mask, true, 0.0, false, false);
  auto math = compat::attention(q, k, v, mask, true, 0.0, false, true);
  EXPECT_LT((def - ref).abs().max().item<double>(), 1e-5);
  EXPECT_LT((math - ref).abs().max().item<double>(), 1e-5);
  // square, no mask (pure causal path, flash-eligible on 2.x)
  auto k2 = k.narrow(2, 0, Tq), v2 = v.narrow(2, 0, Tq);
  auto ref2 = naive_attention(q, k2, v2, torch::ones({B, Tq}, torch::kBool));
  auto d2 = compat::attention(q, k2, v2, torch::Tensor(), true, 0.0, false, false);
  auto m2 = compat::attention(q, k2, v2, torch::Tensor(), true, 0.0, false, true);
  EXPECT_LT((d2 - ref2).abs().max().item<double>(), 1e-5);
  EXPECT_LT((m2 - ref2).abs().max().item<double>(), 1e-5);
}

// ---- independent reference forward (double, per head) ---------------------------------------
torch::Tensor ref_layer_norm(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                             double eps) {
  auto mu = x.mean(-1, true);
  auto var = (x - mu).pow(2).mean(-1, true);
  return (x - mu) / (var + eps).sqrt() * w + b;
}
torch::Tensor ref_rms(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  return x / (x.pow(2).mean(-1, true) + eps).sqrt() * w;
}
torch::Tensor ref_causal_attn(const torch::Tensor& q /*[T,D]*/, const torch::Tensor& k,
                              const torch::Tensor& v) {
  const int64_t T = q.size(0);
  auto s = q.matmul(k.t()) / std::sqrt(double(q.size(1)));
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = i + 1; j < T; ++j) s[i][j] = -1e30;
  return torch::softmax(s, -1).matmul(v);
}
// Rotate pairs (i, i + D/2) by pos * theta^(-2i/D).
torch::Tensor ref_rope(const torch::Tensor& x /*[T,D]*/, double theta) {
  const int64_t T = x.size(0), D = x.size(1);
  auto out = x.clone();
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < D / 2; ++i) {
      double a = t * std::pow(theta, -2.0 * i / D);
      double x1 = x[t][i].item<double>(), x2 = x[t][i + D / 2].item<double>();
      out[t][i] = x1 * std::cos(a) - x2 * std::sin(a);
      out[t][i + D / 2] = x2 * std::cos(a) + x1 * std::sin(a);
    }
  return out;
}

torch::Tensor reference_logits(const ModelConfig& c, std::map<std::string, torch::Tensor> P,
                               const torch::Tensor& tokens /*[T]*/) {
  const int64_t T = tokens.size(0), H = c.n_head, D = c.head_dim(), Hkv = c.n_kv_head;
  const bool g = c.family == Family::GPT2;
  const std::string pre = g ? "transformer." : "model.";
  auto x = (g ? P[pre + "wte.weight"] : P[pre + "embed_tokens.weight"]).index_select(0, tokens);
  if (g) x = x + P[pre + "wpe.weight"].narrow(0, 0, T);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string b = pre + (g ? "h." : "layers.") + std::to_string(l) + ".";
    auto lin = [&](const torch::Tensor& in, const std::string& n, bool bias) {
      auto y = in.matmul(P[b + n + ".weight"].t());
      return bias ? y + P[b + n + ".bias"] : y;
    };
    if (g) {
      auto h = ref_layer_norm(x, P[b + "ln_1.weight"], P[b + "ln_1.bias"], c.norm_eps);
      auto qkv = lin(h, "attn.c_attn", true);  // [T, 3C]
      std::vector<torch::Tensor> heads;
      for (int64_t hh = 0; hh < H; ++hh)
        heads.push_back(ref_causal_attn(qkv.narrow(1, hh * D, D), qkv.narrow(1, c.d_model + hh * D, D),
                                        qkv.narrow(1, 2 * c.d_model + hh * D, D)));
      x = x + lin(torch::cat(heads, 1), "attn.c_proj", true);
      auto f = lin(ref_layer_norm(x, P[b + "ln_2.weight"], P[b + "ln_2.bias"], c.norm_eps), "mlp.c_fc", true);
      f = 0.5 * f * (1 + torch::tanh(std::sqrt(2.0 / M_PI) * (f + 0.044715 * f.pow(3))));
      x = x + lin(f, "mlp.c_proj", true);
    } else {
      auto h = ref_rms(x, P[b + "input_layernorm.weight"], c.norm_eps);
      auto q = lin(h, "self_attn.q_proj", false), k = lin(h, "self_attn.k_proj", false),
           v = lin(h, "self_attn.v_proj", false);
      std::vector<torch::Tensor> heads;
      for (int64_t hh = 0; hh < H; ++hh) {
        int64_t kv = hh / (H / Hkv);
        heads.push_back(ref_causal_attn(ref_rope(q.narrow(1, hh * D, D), c.rope_theta),
                                        ref_rope(k.narrow(1, kv * D, D), c.rope_theta),
                                        v.narrow(1, kv * D, D)));
      }
      x = x + lin(torch::cat(heads, 1), "self_attn.o_proj", false);
      auto m = ref_rms(x, P[b + "post_attention_layernorm.weight"], c.norm_eps);
      auto gt = lin(m, "mlp.gate_proj", false);
      x = x + lin(gt * torch::sigmoid(gt) * lin(m, "mlp.up_proj", false), "mlp.down_proj", false);
    }
  }
  x = g ? ref_layer_norm(x, P[pre + "ln_f.weight"], P[pre + "ln_f.bias"], c.norm_eps)
        : ref_rms(x, P[pre + "norm.weight"], c.norm_eps);
  auto head = c.tie_embeddings ? (g ? P[pre + "wte.weight"] : P[pre + "embed_tokens.weight"])
                               : P["lm_head.weight"];
  return x.matmul(head.t());  // [T, V]
}

void randomise_norms(torch::nn::Module& m) {  // make norm weights/biases non-trivial
  torch::NoGradGuard ng;
  for (auto& p : m.named_parameters())
    if (p.key().find("ln_") != std::string::npos || p.key().find("norm") != std::string::npos)
      p.value().add_(torch::randn_like(p.value()) * 0.1);
}

class FamilyTest : public ::testing::TestWithParam<std::tuple<Family, int64_t, bool>> {};

TEST_P(FamilyTest, MatchesIndependentReference) {
  auto [fam, kv, tie] = GetParam();
  torch::manual_seed(3);
  ModelConfig c = small_cfg(fam, kv, tie);
  CausalLM m(c);
  randomise_norms(*m);
  auto tokens = torch::randint(0, c.vocab_size, {1, 9}, torch::kLong);
  torch::NoGradGuard ng;
  auto logits = m->forward(tokens, positions_from_mask(torch::ones({1, 9}, torch::kBool)),
                           torch::Tensor());
  auto ref = reference_logits(c, params_of(*m), tokens[0]);
  EXPECT_EQ(logits.scalar_type(), torch::kFloat);
  EXPECT_LT((logits[0].to(torch::kDouble) - ref).abs().max().item<double>(), 1e-4);
}

TEST_P(FamilyTest, LeftPaddingDoesNotChangeRealPositions) {
  auto [fam, kv, tie] = GetParam();
  torch::manual_seed(4);
  ModelConfig c = small_cfg(fam, kv, tie);
  CausalLM m(c);
  torch::NoGradGuard ng;
  auto a = torch::randint(1, c.vocab_size, {1, 7}, torch::kLong);
  auto alone = m->forward(a, positions_from_mask(torch::ones({1, 7}, torch::kBool)), torch::Tensor());
  auto padded = torch::cat({torch::zeros({1, 3}, torch::kLong), a}, 1);  // [1, 10]
  auto other = torch::randint(1, c.vocab_size, {1, 10}, torch::kLong);
  auto batch = torch::cat({padded, other}, 0);                            // [2, 10]
  auto mask = torch::cat({torch::cat({torch::zeros({1, 3}, torch::kBool), torch::ones({1, 7}, torch::kBool)}, 1),
                          torch::ones({1, 10}, torch::kBool)}, 0);
  auto out = m->forward(batch, positions_from_mask(mask), mask);
  EXPECT_FALSE(out.isnan().any().item<bool>());
  EXPECT_LT((out[0].narrow(0, 3, 7) - alone[0]).abs().max().item<double>(), 1e-5);
  auto other_alone = m->forward(other, torch::Tensor(), torch::Tensor());
  EXPECT_LT((out[1] - other_alone[0]).abs().max().item<double>(), 1e-5);
}

TEST_P(FamilyTest, ActivationCheckpointingGivesSameGradients) {
  auto [fam, kv, tie] = GetParam();
  ModelConfig c = small_cfg(fam, kv, tie);
  c.dropout = 0.1;
  auto tokens = torch::randint(0, c.vocab_size, {2, 6}, torch::kLong);
  std::vector<std::map<std::string, torch::Tensor>> grads;
  torch::Tensor losses[2];
  for (bool ck : {false, true}) {
    c.activation_checkpointing = ck;
    torch::manual_seed(5);
    CausalLM m(c);
    m->train();
    torch::manual_seed(6);  // same dropout masks in both runs
    auto logits = m->forward(tokens, torch::Tensor(), torch::Tensor());
    auto loss = torch::nn::functional::cross_entropy(logits.view({-1, c.vocab_size}), tokens.view({-1}));
    loss.backward();
    losses[ck] = loss.detach();
    std::map<std::string, torch::Tensor> g;
    for (auto& p : m->named_parameters()) g[p.key()] = p.value().grad().clone();
    grads.push_back(g);
  }
  EXPECT_EQ(losses[0].item<double>(), losses[1].item<double>());
  for (auto& [n, g] : grads[0]) {
    ASSERT_TRUE(grads[1][n].defined()) << n;
    EXPECT_LT((g - grads[1][n]).abs().max().item<double>(), 1e-6) << n;
    EXPECT_GT(g.abs().sum().item<double>(), 0.0) << n;
  }
}

// The reward model's shared-prompt path (each prompt forwarded once, its responses attending to
// the prompt's cached keys/values) against score_last on the concatenated rows: the same rewards
// and the same parameter gradients. Prompts of different lengths (left padding), responses of
// different lengths (right padding), several responses per prompt, a prompt used by none.
TEST_P(FamilyTest, SharedPromptScoresEqualFullRows) {
  auto [fam, kv, tie] = GetParam();
  torch::manual_seed(8);
  ScalarModel rm(small_cfg(fam, kv, tie));
  randomise_norms(*rm);
  const std::vector<int64_t> plen = {2, 5, 4, 3}, rlen = {1, 6, 3, 2, 5, 4, 6}, group = {0, 1, 1, 2, 0, 1, 2};
  std::vector<torch::Tensor> prompt, resp;
  for (int64_t L : plen) prompt.push_back(torch::randint(1, 37, {L}, torch::kLong));
  for (int64_t L : rlen) resp.push_back(torch::randint(1, 37, {L}, torch::kLong));
  const int64_t G = 4, R = 7, Tp = 5, Tr = 6, T = 11;
  auto pt = torch::zeros({G, Tp}, torch::kLong), pm = torch::zeros({G, Tp}, torch::kBool);
  for (int64_t g = 0; g < G; ++g) {
    pt[g].narrow(0, Tp - plen[g], plen[g]).copy_(prompt[g]);
    pm[g].narrow(0, Tp - plen[g], plen[g]).fill_(true);
  }
  auto rt = torch::zeros({R, Tr}, torch::kLong), rmk = torch::zeros({R, Tr}, torch::kBool);
  auto full = torch::zeros({R, T}, torch::kLong), fm = torch::zeros({R, T}, torch::kBool);
  for (int64_t r = 0; r < R; ++r) {
    rt[r].narrow(0, 0, rlen[r]).copy_(resp[r]);
    rmk[r].narrow(0, 0, rlen[r]).fill_(true);
    auto row = torch::cat({prompt[group[r]], resp[r]});
    full[r].narrow(0, 0, row.size(0)).copy_(row);
    fm[r].narrow(0, 0, row.size(0)).fill_(true);
  }
  auto weights = torch::randn({R});
  auto grads_of = [&](const torch::Tensor& rewards) {
    rm->zero_grad();
    (rewards * weights).sum().backward();
    std::map<std::string, torch::Tensor> g;
    for (auto& p : rm->named_parameters()) g[p.key()] = p.value().grad().clone();
    return g;
  };
  auto ref = rm->score_last(full, fm);  // [R]
  auto ref_grads = grads_of(ref);
  auto prefix = rm->encode_prompts(pt, pm);
  auto got = rm->score_responses(prefix, rt, rmk, torch::tensor(group, torch::kLong));  // [R]
  auto got_grads = grads_of(got);
  EXPECT_LT((got - ref).abs().max().item<double>(), 1e-5) << got << ref;
  for (auto& [n, g] : ref_grads) {
    ASSERT_TRUE(got_grads[n].defined()) << n;
    EXPECT_LT((g - got_grads[n]).abs().max().item<double>(), 1e-5 * (1 + g.abs().max().item<double>())) << n;
  }
  EXPECT_GT(got_grads["score.weight"].abs().sum().item<double>(), 0.0);
}

INSTANTIATE_TEST_SUITE_P(Families, FamilyTest,
                         ::testing::Values(std::make_tuple(Family::GPT2, 4, true),
                                           std::make_tuple(Family::GPT2, 4, false),
                                           std::make_tuple(Family::Llama, 4, true),
                                           std::make_tuple(Family::Llama, 2, false),
                                           std::make_tuple(Family::Llama, 1, true)));

TEST(ScalarModel, ScoreLastReadsLastRealToken) {
  torch::manual_seed(7);
  ScalarModel rm(small_cfg(Family::Llama, 2));
  torch::NoGradGuard ng;
  // Left-padded rows of different lengths, plus a right-padded row (last real token mid-row).
  auto mask = torch::tensor({0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0}, torch::kBool)
                  .view({4, 5});
  auto tokens = torch::randint(1, 37, {4, 5}, torch::kLong);
  auto all = rm->forward(tokens, positions_from_mask(mask), mask);  // [4, 5]
  auto got = rm->score_last(tokens, mask);
  std::vector<int64_t> last = {4, 4, 4, 2};  // by hand
  for (int64_t b = 0; b < 4; ++b) EXPECT_NEAR(got[b].item<double>(), all[b][last[b]].item<double>(), 1e-6);
  EXPECT_NE(got[0].item<double>(), got[1].item<double>());
}

}  // namespace
}  // namespace rlhf
