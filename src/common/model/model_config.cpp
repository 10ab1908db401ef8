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

std::string trunk_name(Family f) { return f == Family::GPT2 ? "transformer" : "model"; }

// ---- config --------------------------------------------------------------------------------
void ModelConfig::validate() const {
  auto pos = [](const char* k, int64_t v) {
    RLHF_CHECK(v > 0, "model config: {} must be > 0, got {}", k, v);
  };
  pos("vocab_size", vocab_size);
  pos("n_layer", n_layer);
  pos("n_head", n_head);
  pos("n_kv_head", n_kv_head);
  pos("d_model", d_model);
  pos("d_ff", d_ff);
  pos("max_seq_len", max_seq_len);
  RLHF_CHECK(d_model % n_head == 0, "model config: d_model ({}) must be divisible by n_head ({})",
             d_model, n_head);
  RLHF_CHECK(n_head % n_kv_head == 0,
             "model config: n_head ({}) must be divisible by n_kv_head ({})", n_head, n_kv_head);
  if (family == Family::GPT2)
    RLHF_CHECK(n_kv_head == n_head,
               "model config: n_kv_head ({}) must equal n_head ({}) for family gpt2", n_kv_head,
               n_head);
  else
    RLHF_CHECK(head_dim() % 2 == 0, "model config: head_dim (d_model/n_head = {}) must be even for "
               "RoPE (family llama)", head_dim());
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
          {"activation_checkpointing", activation_checkpointing}};
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j) {
  RLHF_CHECK(j.is_object(), "model config: expected a JSON object, got {}", j.dump());
  ModelConfig c;
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
    if (k == "family") {
      RLHF_CHECK(v.is_string(), "model config: 'family' must be a string, got {}", v.dump());
      c.family = parse_family(v.get<std::string>());
    } else if (k == "vocab_size") as_int(c.vocab_size);
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
    else
      throw Error(fmt::format("model config: unknown key '{}' (expected one of family, vocab_size, "
                              "n_layer, n_head, n_kv_head, d_model, d_ff, max_seq_len, norm_eps, "
                              "rope_theta, dropout, tie_embeddings, activation_checkpointing)", k));
  }
  c.validate();
  return c;
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
