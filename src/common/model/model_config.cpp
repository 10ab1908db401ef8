// model_config.cpp — ModelConfig (validation, JSON), family names, the KV cache and the mask
// helpers of model.h. The layers and the trunk are in model.cpp, the heads in heads.cpp.
#include "common/model/model.h"

#include <cmath>

#include "common/core/check.h"
#include "common/core/compat.h"
#include "common/core/strings.h"

namespace rlhf {

std::string family_name(Family f) { return kFamilyNames.name(f); }

Family parse_family(const std::string& s) { return kFamilyNames.parse(s, "model family"); }

int64_t ModelConfig::parameter_count(bool scalar_head) const {
  const int64_t C = d_model, F = d_ff, V = vocab_size, L = n_layer;
  int64_t n = V * C, block = 0;
  if (family == Family::GPT2) {
    n += max_seq_len * C + 2 * C;                     // wpe, ln_f
    block = 4 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * F + F) + (F * C + C);
  } else {
    const int64_t D = head_dim(), Q = n_head * D, KV = n_kv_head * D;
    n += C;                                           // final norm
    block = 2 * C + C * Q + 2 * C * KV + Q * C + 3 * C * F;
    if (qkv_bias) block += Q + 2 * KV;
    if (o_bias) block += C;
    if (mlp_bias) block += 2 * F + C;
    if (qk_norm) block += 2 * D;
  }
  n += L * block;
  if (scalar_head) return n + C + 1;                  // score: weight + bias
  return tie_embeddings ? n : n + V * C;              // lm_head
}

std::string trunk_name(Family f) { return f == Family::GPT2 ? "transformer" : "model"; }

// ---- rope scaling --------------------------------------------------------------------------
bool RopeScaling::operator==(const RopeScaling& o) const {
  return type == o.type && factor == o.factor && low_freq_factor == o.low_freq_factor &&
         high_freq_factor == o.high_freq_factor &&
         original_max_position_embeddings == o.original_max_position_embeddings;
}

nlohmann::json RopeScaling::to_json() const {
  if (type == "none") return nullptr;
  nlohmann::json j = {{"type", type}, {"factor", factor}};
  if (type == "llama3") {
    j["low_freq_factor"] = low_freq_factor;
    j["high_freq_factor"] = high_freq_factor;
    j["original_max_position_embeddings"] = original_max_position_embeddings;
  }
  return j;
}

namespace {
void validate_rope_scaling(const RopeScaling& r) {
  RLHF_CHECK(r.type == "none" || r.type == "linear" || r.type == "llama3",
             "model config: rope_scaling.type '{}' is not supported (none | linear | llama3)",
             r.type);
  if (r.type == "none") return;
  RLHF_CHECK(r.factor > 0 && std::isfinite(r.factor),
             "model config: rope_scaling.factor must be > 0, got {}", r.factor);
  if (r.type != "llama3") return;
  RLHF_CHECK(r.low_freq_factor > 0 && r.high_freq_factor > r.low_freq_factor,
             "model config: rope_scaling needs 0 < low_freq_factor ({}) < high_freq_factor ({})",
             r.low_freq_factor, r.high_freq_factor);
  RLHF_CHECK(r.original_max_position_embeddings > 0,
             "model config: rope_scaling.original_max_position_embeddings must be > 0, got {}",
             r.original_max_position_embeddings);
}

RopeScaling rope_scaling_from_json(const nlohmann::json& v) {
  RopeScaling r;
  if (v.is_null()) return r;
  RLHF_CHECK(v.is_object(), "model config: 'rope_scaling' must be null or an object, got {}",
             v.dump());
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& k = it.key();
    const auto& x = it.value();
    auto num = [&](double& dst) {
      RLHF_CHECK(x.is_number(), "model config: 'rope_scaling.{}' must be a number, got {}", k,
                 x.dump());
      dst = x.get<double>();
    };
    if (k == "type") {
      RLHF_CHECK(x.is_string(), "model config: 'rope_scaling.type' must be a string");
      r.type = x.get<std::string>();
    } else if (k == "factor") num(r.factor);
    else if (k == "low_freq_factor") num(r.low_freq_factor);
    else if (k == "high_freq_factor") num(r.high_freq_factor);
    else if (k == "original_max_position_embeddings") {
      RLHF_CHECK(x.is_number_integer(), "model config: 'rope_scaling.{}' must be an integer", k);
      r.original_max_position_embeddings = x.get<int64_t>();
    } else {
      throw Error(fmt::format("model config: unknown key 'rope_scaling.{}' (expected type, factor, "
                              "low_freq_factor, high_freq_factor, "
                              "original_max_position_embeddings)", k));
    }
  }
  return r;
}

// The feature flags each family's Hugging Face class can represent.
void validate_family_flags(const ModelConfig& c) {
  const std::string fam = family_name(c.family);
  auto no = [&](bool flag, const char* key) {
    RLHF_CHECK(!flag, "model config: {} is not supported by family {}", key, fam);
  };
  if (c.family == Family::GPT2) {
    RLHF_CHECK(c.n_kv_head == c.n_head,
               "model config: n_kv_head ({}) must equal n_head ({}) for family gpt2", c.n_kv_head,
               c.n_head);
    no(c.head_dim_override > 0, "head_dim_override");
    no(c.qkv_bias || c.o_bias || c.mlp_bias, "qkv_bias/o_bias/mlp_bias (gpt2 always has biases)");
    no(c.qk_norm, "qk_norm");
    no(c.rope_scaling.type != "none", "rope_scaling");
  } else {
    RLHF_CHECK(c.head_dim() % 2 == 0, "model config: head_dim ({}) must be even for RoPE",
               c.head_dim());
  }
  if (c.family != Family::Llama) no(c.mlp_bias, "mlp_bias");
  if (c.family != Family::Qwen3) no(c.qk_norm, "qk_norm");
  if (c.family != Family::Mistral) no(c.sliding_window != 0, "sliding_window");
  switch (c.family) {
    case Family::Llama:
    case Family::Qwen3:
      RLHF_CHECK(c.qkv_bias == c.o_bias, "model config: family {} has one attention_bias for "
                 "q/k/v and o: qkv_bias ({}) must equal o_bias ({})", fam, c.qkv_bias, c.o_bias);
      if (c.family == Family::Qwen3)
        RLHF_CHECK(c.qk_norm, "model config: family qwen3 always has qk_norm");
      break;
    case Family::Qwen2:
      RLHF_CHECK(c.qkv_bias && !c.o_bias, "model config: family qwen2 always has q/k/v biases and "
                 "no o_proj bias (qkv_bias true, o_bias false)");
      break;
    case Family::Mistral: no(c.qkv_bias || c.o_bias, "qkv_bias/o_bias"); break;
    case Family::GPT2: break;
  }
  RLHF_CHECK(c.sliding_window == 0 || c.sliding_window >= c.max_seq_len,
             "model config: sliding_window {} < max_seq_len {} (sliding-window attention is not "
             "implemented; only windows covering the whole context are accepted)",
             c.sliding_window, c.max_seq_len);
}
}  // namespace

// ---- config --------------------------------------------------------------------------------
ModelConfig ModelConfig::defaults_for(Family f) {
  ModelConfig c;
  c.family = f;
  c.qkv_bias = f == Family::Qwen2;
  c.qk_norm = f == Family::Qwen3;
  return c;
}

void ModelConfig::validate() const {
  // Bounds far above any released model (vocab 262K, 126 layers, d_model 16384, d_ff 53248,
  // 128 heads, 1M context), checked before anything is allocated: a corrupt or mistyped
  // dimension (n_layer: 1e12) is an error here, not an exhausted memory later.
  auto in_range = [](const char* k, int64_t v, int64_t max) {
    RLHF_CHECK(v > 0 && v <= max, "model config: {} must be in [1, {}], got {}", k, max, v);
  };
  in_range("vocab_size", vocab_size, int64_t{1} << 22);
  in_range("n_layer", n_layer, 1024);
  in_range("n_head", n_head, 1024);
  in_range("n_kv_head", n_kv_head, 1024);
  in_range("d_model", d_model, int64_t{1} << 17);
  in_range("d_ff", d_ff, int64_t{1} << 19);
  in_range("max_seq_len", max_seq_len, int64_t{1} << 23);
  RLHF_CHECK(head_dim_override >= 0 && head_dim_override <= 8192,
             "model config: head_dim_override must be in [0, 8192], got {}", head_dim_override);
  RLHF_CHECK(sliding_window >= 0, "model config: sliding_window must be >= 0, got {}",
             sliding_window);
  if (head_dim_override == 0)
    RLHF_CHECK(d_model % n_head == 0,
               "model config: d_model ({}) must be divisible by n_head ({}) (or set "
               "head_dim_override)", d_model, n_head);
  RLHF_CHECK(n_head % n_kv_head == 0,
             "model config: n_head ({}) must be divisible by n_kv_head ({})", n_head, n_kv_head);
  validate_family_flags(*this);
  validate_rope_scaling(rope_scaling);
  RLHF_CHECK(norm_eps > 0 && std::isfinite(norm_eps), "model config: norm_eps must be > 0, got {}",
             norm_eps);
  RLHF_CHECK(rope_theta > 0 && std::isfinite(rope_theta),
             "model config: rope_theta must be > 0, got {}", rope_theta);
  RLHF_CHECK(dropout >= 0 && dropout < 1, "model config: dropout must be in [0, 1), got {}",
             dropout);
}

nlohmann::json ModelConfig::to_json() const {
  return {{"family", family_name(family)}, {"vocab_size", vocab_size}, {"n_layer", n_layer},
          {"n_head", n_head}, {"n_kv_head", n_kv_head}, {"d_model", d_model}, {"d_ff", d_ff},
          {"max_seq_len", max_seq_len}, {"norm_eps", norm_eps}, {"rope_theta", rope_theta},
          {"dropout", dropout}, {"tie_embeddings", tie_embeddings},
          {"activation_checkpointing", activation_checkpointing},
          {"head_dim_override", head_dim_override}, {"qkv_bias", qkv_bias}, {"o_bias", o_bias},
          {"mlp_bias", mlp_bias}, {"qk_norm", qk_norm}, {"rope_scaling", rope_scaling.to_json()},
          {"sliding_window", sliding_window}};
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j) {
  RLHF_CHECK(j.is_object(), "model config: expected a JSON object, got {}", j.dump());
  Family fam = Family::GPT2;
  if (j.contains("family")) {
    RLHF_CHECK(j["family"].is_string(), "model config: 'family' must be a string, got {}",
               j["family"].dump());
    fam = parse_family(j["family"].get<std::string>());
  }
  ModelConfig c = defaults_for(fam);
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const auto& v = it.value();
    auto as_int = [&](int64_t& dst) {
      RLHF_CHECK(v.is_number_integer(), "model config: '{}' must be an integer, got {}", k, v.dump());
      dst = v.get<int64_t>();
    };
    auto as_num = [&](double& dst) {
      RLHF_CHECK(v.is_number(), "model config: '{}' must be a number, got {}", k, v.dump());
      dst = v.get<double>();
    };
    auto as_bool = [&](bool& dst) {
      RLHF_CHECK(v.is_boolean(), "model config: '{}' must be true/false, got {}", k, v.dump());
      dst = v.get<bool>();
    };
    if (k == "family") continue;
    else if (k == "vocab_size") as_int(c.vocab_size);
    else if (k == "n_layer") as_int(c.n_layer);
    else if (k == "n_head") as_int(c.n_head);
    else if (k == "n_kv_head") as_int(c.n_kv_head);
    else if (k == "d_model") as_int(c.d_model);
    else if (k == "d_ff") as_int(c.d_ff);
    else if (k == "max_seq_len") as_int(c.max_seq_len);
    else if (k == "norm_eps") as_num(c.norm_eps);
    else if (k == "rope_theta") as_num(c.rope_theta);
    else if (k == "dropout") as_num(c.dropout);
    else if (k == "tie_embeddings") as_bool(c.tie_embeddings);
    else if (k == "activation_checkpointing") as_bool(c.activation_checkpointing);
    else if (k == "head_dim_override") as_int(c.head_dim_override);
    else if (k == "qkv_bias") as_bool(c.qkv_bias);
    else if (k == "o_bias") as_bool(c.o_bias);
    else if (k == "mlp_bias") as_bool(c.mlp_bias);
    else if (k == "qk_norm") as_bool(c.qk_norm);
    else if (k == "rope_scaling") c.rope_scaling = rope_scaling_from_json(v);
    else if (k == "sliding_window") as_int(c.sliding_window);
    else
      throw Error(fmt::format("model config: unknown key '{}' (expected one of family, vocab_size, "
                              "n_layer, n_head, n_kv_head, d_model, d_ff, max_seq_len, norm_eps, "
                              "rope_theta, dropout, tie_embeddings, activation_checkpointing, "
                              "head_dim_override, qkv_bias, o_bias, mlp_bias, qk_norm, "
                              "rope_scaling, sliding_window)", k));
  }
  c.validate();
  return c;
}

// Same float32 operations, in the same order, as transformers' _compute_default_rope_parameters,
// _compute_linear_scaling_rope_parameters and _compute_llama3_parameters (a / t is t.reciprocal()
// * a there, as in torch's Tensor.__rtruediv__).
torch::Tensor rope_inv_freq(const ModelConfig& cfg) {
  const int64_t D = cfg.head_dim();
  auto expo = torch::arange(0, D, 2, torch::kLong).to(torch::kFloat) / static_cast<double>(D);
  auto inv = torch::pow(cfg.rope_theta, expo).reciprocal();  // [D/2]
  const RopeScaling& r = cfg.rope_scaling;
  if (r.type == "linear") return inv / r.factor;
  if (r.type != "llama3") return inv;
  const double old_len = static_cast<double>(r.original_max_position_embeddings);
  const double low_wl = old_len / r.low_freq_factor, high_wl = old_len / r.high_freq_factor;
  auto wavelen = inv.reciprocal() * (2 * M_PI);
  auto scaled = torch::where(wavelen > low_wl, inv / r.factor, inv);
  auto smooth = (wavelen.reciprocal() * old_len - r.low_freq_factor) /
                (r.high_freq_factor - r.low_freq_factor);
  auto smoothed = (1 - smooth) * scaled / r.factor + smooth * scaled;
  auto medium = (wavelen < high_wl).logical_not().logical_and((wavelen > low_wl).logical_not());
  return torch::where(medium, smoothed, scaled);
}

KVCache KVCache::allocate(const ModelConfig& cfg, int64_t batch, int64_t capacity,
                          torch::TensorOptions opt) {
  RLHF_CHECK(batch > 0 && capacity > 0, "KVCache::allocate: batch ({}) and capacity ({}) must be > 0",
             batch, capacity);
  KVCache c;
  c.capacity = capacity;
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    c.k.push_back(torch::zeros({batch, cfg.n_kv_head, capacity, cfg.head_dim()}, opt));
    c.v.push_back(torch::zeros({batch, cfg.n_kv_head, capacity, cfg.head_dim()}, opt));
  }
  return c;
}

PagedKV PagedKV::allocate(const ModelConfig& cfg, int64_t num_blocks, int64_t block_size,
                          torch::TensorOptions opt) {
  RLHF_CHECK(num_blocks > 1 && block_size > 0,
             "PagedKV::allocate: num_blocks ({}) must be > 1 and block_size ({}) > 0", num_blocks,
             block_size);
  PagedKV p;
  p.block_size = block_size;
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    p.k.push_back(torch::empty({num_blocks, block_size, cfg.n_kv_head, cfg.head_dim()}, opt));
    p.v.push_back(torch::empty({num_blocks, block_size, cfg.n_kv_head, cfg.head_dim()}, opt));
  }
  return p;
}

int64_t PagedKV::bytes() const {
  int64_t n = 0;
  for (size_t l = 0; l < k.size(); ++l)
    n += static_cast<int64_t>(k[l].nbytes() + v[l].nbytes());
  return n;
}

void PagedKV::zero_block(int64_t b) {
  for (size_t l = 0; l < k.size(); ++l) {
    k[l].select(0, b).zero_();
    v[l].select(0, b).zero_();
  }
}

void PagedKV::copy_block(int64_t from, int64_t to) {
  for (size_t l = 0; l < k.size(); ++l) {
    k[l].select(0, to).copy_(k[l].select(0, from));
    v[l].select(0, to).copy_(v[l].select(0, from));
  }
}

torch::ScalarType KVCache::storage_dtype(const torch::Device& dev, torch::ScalarType param_dtype) {
  auto ac = compat::autocast_state();
  return (dev.is_cuda() && ac.enabled) ? ac.dtype : param_dtype;
}

torch::Tensor positions_from_mask(const torch::Tensor& mask) {
  return (mask.to(torch::kLong).cumsum(1) - 1).clamp_min(0);  // [B, T]
}

torch::Tensor last_true_index(const torch::Tensor& mask) {
  auto idx = torch::arange(mask.size(1), torch::dtype(torch::kLong).device(mask.device()));
  return (mask.to(torch::kLong) * idx).amax(1);  // [B]; all-false row -> 0
}

}  // namespace rlhf
