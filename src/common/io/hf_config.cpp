// hf_config.cpp — config.json <-> ModelConfig for the Hugging Face families (see hf_config.h).
#include "common/io/hf_config.h"

#include <set>

#include <fmt/ranges.h>

#include "common/core/check.h"

namespace rlhf {

namespace {

// Keys that never change what the weights compute (ids, bookkeeping, runtime switches).
const std::set<std::string> kHarmless = {
    "architectures", "model_type", "dtype", "torch_dtype", "transformers_version", "bos_token_id",
    "eos_token_id", "pad_token_id", "use_cache", "initializer_range", "_name_or_path", "id2label",
    "label2id", "problem_type", "return_dict", "output_attentions", "output_hidden_states",
    "chunk_size_feed_forward", "tokenizer_class", "is_llama_config", "num_labels",
    "rlhf_score_bias"};

// Typed access to config.json that records which keys were read.
struct Reader {
  const nlohmann::json& j;
  const std::string& where;
  std::set<std::string> used;

  bool has(const std::string& k) {
    used.insert(k);
    return j.contains(k) && !j[k].is_null();
  }
  int64_t i(const std::string& k) {
    RLHF_CHECK(has(k), "{}: required key '{}' missing", where, k);
    RLHF_CHECK(j[k].is_number_integer(), "{}: '{}' must be an integer, got {}", where, k, j[k].dump());
    return j[k].get<int64_t>();
  }
  int64_t i(const std::string& k, int64_t def) { return has(k) ? i(k) : def; }
  double d(const std::string& k, double def) {
    if (!has(k)) return def;
    RLHF_CHECK(j[k].is_number(), "{}: '{}' must be a number, got {}", where, k, j[k].dump());
    return j[k].get<double>();
  }
  bool b(const std::string& k, bool def) {
    if (!has(k)) return def;
    RLHF_CHECK(j[k].is_boolean(), "{}: '{}' must be true/false, got {}", where, k, j[k].dump());
    return j[k].get<bool>();
  }
  std::string s(const std::string& k, const std::string& def) {
    if (!has(k)) return def;
    RLHF_CHECK(j[k].is_string(), "{}: '{}' must be a string, got {}", where, k, j[k].dump());
    return j[k].get<std::string>();
  }
  // A key we accept with exactly one value (or absent / null).
  void only(const std::string& k, const nlohmann::json& want) {
    if (!has(k)) return;
    RLHF_CHECK(j[k] == want, "{}: '{}' = {} is not supported (only {})", where, k, j[k].dump(),
               want.dump());
  }
  void reject_unused() const {
    for (auto it = j.begin(); it != j.end(); ++it)
      RLHF_CHECK(used.count(it.key()) || kHarmless.count(it.key()),
                 "{}: config key '{}' (= {}) is not supported by this importer", where, it.key(),
                 it.value().dump());
  }
};

void read_rope_dict(const nlohmann::json& r, const std::string& key, const std::string& where,
                    ModelConfig& c) {
  RLHF_CHECK(r.is_object(), "{}: '{}' must be an object, got {}", where, key, r.dump());
  std::string type = "default";
  for (const char* tk : {"rope_type", "type"})
    if (r.contains(tk)) {
      RLHF_CHECK(r[tk].is_string(), "{}: '{}.{}' must be a string", where, key, tk);
      type = r[tk].get<std::string>();
    }
  RLHF_CHECK(type == "default" || type == "linear" || type == "llama3",
             "{}: {} type '{}' is not supported (supported: default, linear, llama3)", where, key,
             type);
  std::set<std::string> allowed = {"rope_type", "type", "rope_theta", "partial_rotary_factor"};
  if (type != "default") allowed.insert("factor");
  if (type == "llama3")
    allowed.insert({"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"});
  for (auto it = r.begin(); it != r.end(); ++it)
    RLHF_CHECK(allowed.count(it.key()), "{}: '{}.{}' (= {}) is not supported for rope type '{}'",
               where, key, it.key(), it.value().dump(), type);
  auto num = [&](const char* k) {
    RLHF_CHECK(r.contains(k) && r[k].is_number(), "{}: '{}' of type '{}' needs a number '{}'",
               where, key, type, k);
    return r[k].get<double>();
  };
  if (r.contains("rope_theta")) c.rope_theta = num("rope_theta");
  if (r.contains("partial_rotary_factor"))
    RLHF_CHECK(num("partial_rotary_factor") == 1.0, "{}: '{}.partial_rotary_factor' {} is not "
               "supported (only 1.0)", where, key, r["partial_rotary_factor"].dump());
  if (type == "default") return;
  c.rope_scaling.type = type;
  c.rope_scaling.factor = num("factor");
  if (type != "llama3") return;
  c.rope_scaling.low_freq_factor = num("low_freq_factor");
  c.rope_scaling.high_freq_factor = num("high_freq_factor");
  RLHF_CHECK(r["original_max_position_embeddings"].is_number_integer(),
             "{}: '{}.original_max_position_embeddings' must be an integer", where, key);
  c.rope_scaling.original_max_position_embeddings =
      r["original_max_position_embeddings"].get<int64_t>();
}

void read_rope(Reader& g, ModelConfig& c) {
  c.rope_theta = g.d("rope_theta", 10000.0);
  const bool params = g.has("rope_parameters"), scaling = g.has("rope_scaling");
  RLHF_CHECK(!(params && scaling), "{}: both 'rope_parameters' and 'rope_scaling' are set",
             g.where);
  if (params) read_rope_dict(g.j["rope_parameters"], "rope_parameters", g.where, c);
  if (scaling) read_rope_dict(g.j["rope_scaling"], "rope_scaling", g.where, c);
}

void read_gpt2(Reader& g, ModelConfig& c) {
  c.d_model = g.i("n_embd");
  c.n_layer = g.i("n_layer");
  c.n_head = g.i("n_head");
  c.n_kv_head = c.n_head;
  c.max_seq_len = g.i("n_positions");
  if (g.has("n_ctx"))
    RLHF_CHECK(g.i("n_ctx") == c.max_seq_len, "{}: n_ctx {} != n_positions {}", g.where,
               g.i("n_ctx"), c.max_seq_len);
  c.vocab_size = g.i("vocab_size");
  c.norm_eps = g.d("layer_norm_epsilon", 1e-5);
  c.d_ff = g.i("n_inner", 4 * c.d_model);
  c.tie_embeddings = g.b("tie_word_embeddings", true);
  const std::string act = g.s("activation_function", "gelu_new");
  RLHF_CHECK(act == "gelu_new" || act == "gelu_pytorch_tanh",
             "{}: activation_function '{}' is not supported (gpt2 family uses gelu_new)", g.where, act);
  g.only("scale_attn_weights", true);
  g.only("scale_attn_by_inverse_layer_idx", false);
  g.only("add_cross_attention", false);
  // Training-time or precision switches and GPT2DoubleHeadsModel's summary head: no effect on
  // the language model's weights.
  for (const char* k : {"resid_pdrop", "embd_pdrop", "attn_pdrop", "reorder_and_upcast_attn",
                        "summary_activation", "summary_first_dropout", "summary_proj_to_labels",
                        "summary_type", "summary_use_proj", "task_specific_params"})
    g.has(k);
}

// llama / mistral / qwen2 / qwen3.
void read_llama_like(Reader& g, ModelConfig& c) {
  const Family f = c.family;
  c.d_model = g.i("hidden_size");
  c.d_ff = g.i("intermediate_size");
  c.n_head = g.i("num_attention_heads");
  c.n_kv_head = g.i("num_key_value_heads", c.n_head);
  c.n_layer = g.i("num_hidden_layers");
  const int64_t def_ctx = f == Family::Llama ? 2048 : f == Family::Mistral ? 131072 : 32768;
  c.max_seq_len = g.i("max_position_embeddings", def_ctx);
  c.norm_eps = g.d("rms_norm_eps", 1e-6);
  c.tie_embeddings = g.b("tie_word_embeddings", false);
  c.vocab_size = g.i("vocab_size");
  const std::string act = g.s("hidden_act", "silu");
  RLHF_CHECK(act == "silu", "{}: hidden_act '{}' is not supported (silu)", g.where, act);
  read_rope(g, c);
  RLHF_CHECK(c.n_head > 0 && c.d_model > 0, "{}: num_attention_heads ({}) and hidden_size ({}) "
             "must be positive", g.where, c.n_head, c.d_model);
  const int64_t derived = c.d_model / c.n_head;
  const int64_t hd = g.i("head_dim", f == Family::Qwen3 ? 128 : derived);
  if (hd != derived || c.d_model % c.n_head != 0) c.head_dim_override = hd;
  g.only("attention_dropout", 0.0);
  if (f == Family::Llama || f == Family::Qwen3) c.qkv_bias = c.o_bias = g.b("attention_bias", false);
  if (f == Family::Llama) {
    c.mlp_bias = g.b("mlp_bias", false);
    g.only("pretraining_tp", 1);
    g.only("rope_interleaved", false);
  }
  if (f == Family::Mistral && g.has("sliding_window")) {
    c.sliding_window = g.i("sliding_window");
    RLHF_CHECK(c.sliding_window >= c.max_seq_len, "{}: 'sliding_window' {} is smaller than the "
               "context max_position_embeddings {}: sliding-window attention is not implemented",
               g.where, c.sliding_window, c.max_seq_len);
  }
  if (f == Family::Qwen2 || f == Family::Qwen3) {
    g.only("use_sliding_window", false);
    g.has("sliding_window");     // unused while use_sliding_window is false
    g.has("max_window_layers");  // idem
    if (g.has("layer_types"))
      for (const auto& t : g.j["layer_types"])
        RLHF_CHECK(t == "full_attention", "{}: 'layer_types' entry {} is not supported (only "
                   "\"full_attention\")", g.where, t.dump());
  }
}

}  // namespace

ModelConfig config_from_hf(const nlohmann::json& j, const std::string& where) {
  RLHF_CHECK(j.is_object(), "{}: expected a JSON object", where);
  Reader g{j, where, {}};
  const std::string mt = g.s("model_type", "");
  ModelConfig c;
  if (mt == "gpt2") {
    c = ModelConfig::defaults_for(Family::GPT2);
    read_gpt2(g, c);
  } else if (mt == "llama" || mt == "mistral" || mt == "qwen2" || mt == "qwen3") {
    c = ModelConfig::defaults_for(parse_family(mt));
    read_llama_like(g, c);
  } else {
    throw Error(fmt::format("{}: model_type '{}' is not supported (expected gpt2, llama, mistral, "
                            "qwen2 or qwen3)", where, mt));
  }
  c.dropout = 0.0;  // training choice, not a property of the weights
  g.reject_unused();
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", where, e.what()));
  }
  return c;
}

bool hf_is_sequence_classifier(const nlohmann::json& j, const std::string& where) {
  if (!j.contains("architectures") || !j["architectures"].is_array() || j["architectures"].empty() ||
      !j["architectures"][0].is_string())
    return false;
  const std::string a = j["architectures"][0].get<std::string>(), suf = "ForSequenceClassification";
  if (a.size() < suf.size() || a.compare(a.size() - suf.size(), suf.size(), suf) != 0) return false;
  int64_t labels = 2;  // transformers' default
  if (j.contains("id2label") && j["id2label"].is_object()) labels = j["id2label"].size();
  if (j.contains("num_labels") && j["num_labels"].is_number_integer())
    labels = j["num_labels"].get<int64_t>();
  RLHF_CHECK(labels == 1, "{}: {} with {} labels is not supported (a reward model / critic has "
             "num_labels 1)", where, a, labels);
  return true;
}

namespace {
const char* hf_class_prefix(Family f) {
  switch (f) {
    case Family::GPT2: return "GPT2";
    case Family::Llama: return "Llama";
    case Family::Mistral: return "Mistral";
    case Family::Qwen2: return "Qwen2";
    case Family::Qwen3: return "Qwen3";
  }
  return "?";
}

nlohmann::json rope_scaling_to_hf(const RopeScaling& r) {
  if (r.type == "none") return nullptr;
  nlohmann::json j = {{"rope_type", r.type}, {"factor", r.factor}};
  if (r.type == "llama3") {
    j["low_freq_factor"] = r.low_freq_factor;
    j["high_freq_factor"] = r.high_freq_factor;
    j["original_max_position_embeddings"] = r.original_max_position_embeddings;
  }
  return j;
}

nlohmann::json llama_like_to_hf(const ModelConfig& c) {
  nlohmann::json j = {
      {"vocab_size", c.vocab_size}, {"hidden_size", c.d_model}, {"intermediate_size", c.d_ff},
      {"num_hidden_layers", c.n_layer}, {"num_attention_heads", c.n_head},
      {"num_key_value_heads", c.n_kv_head}, {"max_position_embeddings", c.max_seq_len},
      {"rms_norm_eps", c.norm_eps}, {"rope_theta", c.rope_theta},
      {"rope_scaling", rope_scaling_to_hf(c.rope_scaling)},
      {"tie_word_embeddings", c.tie_embeddings}, {"hidden_act", "silu"},
      {"attention_dropout", 0.0}, {"initializer_range", 0.02}};
  if (c.family != Family::Qwen2 || c.head_dim_override > 0) j["head_dim"] = c.head_dim();
  switch (c.family) {
    case Family::Llama:
      j["attention_bias"] = c.qkv_bias;
      j["mlp_bias"] = c.mlp_bias;
      j["pretraining_tp"] = 1;
      break;
    case Family::Mistral:
      j["sliding_window"] = c.sliding_window > 0 ? nlohmann::json(c.sliding_window) : nullptr;
      break;
    case Family::Qwen3: j["attention_bias"] = c.qkv_bias; [[fallthrough]];
    case Family::Qwen2:
      j["use_sliding_window"] = false;
      j["sliding_window"] = nullptr;
      j["max_window_layers"] = c.n_layer;
      break;
    case Family::GPT2: break;
  }
  return j;
}
}  // namespace

nlohmann::json config_to_hf(const ModelConfig& c, const HfConfigIds& ids, bool seq_cls) {
  nlohmann::json j;
  if (c.family == Family::GPT2) {
    j = {{"vocab_size", c.vocab_size}, {"n_positions", c.max_seq_len}, {"n_ctx", c.max_seq_len},
         {"n_embd", c.d_model}, {"n_layer", c.n_layer}, {"n_head", c.n_head},
         {"n_inner", c.d_ff}, {"activation_function", "gelu_new"},
         {"layer_norm_epsilon", c.norm_eps}, {"resid_pdrop", c.dropout},
         {"embd_pdrop", c.dropout}, {"attn_pdrop", c.dropout}, {"initializer_range", 0.02},
         {"scale_attn_weights", true}, {"tie_word_embeddings", c.tie_embeddings}};
  } else {
    j = llama_like_to_hf(c);
  }
  const std::string prefix = hf_class_prefix(c.family);
  const std::string arch = seq_cls ? prefix + "ForSequenceClassification"
                                   : (c.family == Family::GPT2 ? "GPT2LMHeadModel"
                                                               : prefix + "ForCausalLM");
  j["architectures"] = {arch};
  j["model_type"] = family_name(c.family);
  j["torch_dtype"] = "float32";
  if (ids.bos >= 0) j["bos_token_id"] = ids.bos;
  if (ids.eos >= 0) j["eos_token_id"] = ids.eos;
  if (seq_cls) {
    RLHF_CHECK(ids.pad >= 0, "config_to_hf: a sequence-classification export needs a "
               "pad_token_id (transformers scores the last non-pad token)");
    j["id2label"] = {{"0", "LABEL_0"}};
    j["label2id"] = {{"LABEL_0", 0}};
  }
  if (ids.pad >= 0) j["pad_token_id"] = ids.pad;
  return j;
}

}  // namespace rlhf
