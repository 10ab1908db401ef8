#include "common/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <fmt/ranges.h>

#include "common/core/check.h"
#include "common/core/strings.h"

namespace rlhf {

namespace {


bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

struct DtypeInfo {
  torch::ScalarType type;
  int64_t size;
};

bool dtype_of(const std::string& d, DtypeInfo* out) {
  if (d == "F32") *out = {torch::kFloat, 4};
  else if (d == "F16") *out = {torch::kHalf, 2};
  else if (d == "BF16") *out = {torch::kBFloat16, 2};
  else if (d == "F64") *out = {torch::kDouble, 8};
  else return false;
  return true;
}

struct Entry {
  std::string name;
  DtypeInfo dt;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

// One tensor's header entry, checked: dtype known, shape non-negative and its byte count within
// 64 bits, data_offsets inside the data section and matching the shape.
Entry parse_entry(const std::string& path, const std::string& name, const nlohmann::json& v,
                  uint64_t data_size) {
  RLHF_CHECK(v.is_object() && v.contains("dtype") && v["dtype"].is_string() &&
                 v.contains("shape") && v["shape"].is_array() && v.contains("data_offsets") &&
                 v["data_offsets"].is_array() && v["data_offsets"].size() == 2,
             "{}: tensor '{}': header entry needs dtype (string), shape (array) and "
             "data_offsets ([begin, end])", path, name);
  Entry e;
  e.name = name;
  const std::string d = v["dtype"].get<std::string>();
  RLHF_CHECK(dtype_of(d, &e.dt), "{}: tensor '{}' has unsupported dtype '{}' (supported: F32, "
             "F16, BF16, F64)", path, name, d);
  int64_t numel = 1;
  for (const auto& s : v["shape"]) {
    RLHF_CHECK(s.is_number_unsigned() && s.get<uint64_t>() <= uint64_t(INT64_MAX),
               "{}: tensor '{}' has a bad shape {}", path, name, v["shape"].dump());
    e.shape.push_back(s.get<int64_t>());
    RLHF_CHECK(!__builtin_mul_overflow(numel, e.shape.back(), &numel),
               "{}: tensor '{}': shape {} has more elements than fit in 64 bits", path, name,
               v["shape"].dump());
  }
  int64_t nbytes = 0;
  RLHF_CHECK(!__builtin_mul_overflow(numel, e.dt.size, &nbytes),
             "{}: tensor '{}': shape {} x {} bytes does not fit in 64 bits", path, name,
             v["shape"].dump(), e.dt.size);
  for (const auto& o : v["data_offsets"])
    RLHF_CHECK(o.is_number_unsigned(), "{}: tensor '{}' has bad data_offsets {}", path, name,
               v["data_offsets"].dump());
  e.begin = v["data_offsets"][0].get<uint64_t>();
  e.end = v["data_offsets"][1].get<uint64_t>();
  RLHF_CHECK(e.begin <= e.end && e.end <= data_size,
             "{}: tensor '{}' has data_offsets [{}, {}] outside the data section of {} bytes "
             "(truncated file?)", path, name, e.begin, e.end, data_size);
  RLHF_CHECK(e.end - e.begin == static_cast<uint64_t>(nbytes),
             "{}: tensor '{}' spans {} bytes but shape {} x {} needs {}", path, name,
             e.end - e.begin, shape_str(e.shape), d, nbytes);
  return e;
}

}  // namespace

SafetensorsData read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  RLHF_CHECK(in.good(), "cannot open safetensors file '{}': not found or unreadable", path);
  in.seekg(0, std::ios::end);
  const uint64_t fsize = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  RLHF_CHECK(fsize >= 8, "{}: not a safetensors file (only {} bytes, the header length alone is 8)",
             path, fsize);
  unsigned char lb[8];
  in.read(reinterpret_cast<char*>(lb), 8);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | lb[i];
  RLHF_CHECK(hlen >= 2 && hlen <= fsize - 8 && hlen <= (uint64_t(100) << 20),
             "{}: bad safetensors header length {} (file has {} bytes; truncated or not a "
             "safetensors file?)", path, hlen, fsize);
  std::string header(hlen, '\0');
  in.read(header.data(), static_cast<std::streamsize>(hlen));
  nlohmann::json h;
  try {
    h = nlohmann::json::parse(header);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: safetensors header is not valid JSON: {}", path, e.what()));
  }
  RLHF_CHECK(h.is_object(), "{}: safetensors header must be a JSON object", path);
  const uint64_t data_start = 8 + hlen, data_size = fsize - data_start;

  SafetensorsData out;
  std::vector<Entry> entries;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      RLHF_CHECK(v.is_object(), "{}: __metadata__ must be an object of strings", path);
      for (auto m = v.begin(); m != v.end(); ++m) {
        RLHF_CHECK(m.value().is_string(), "{}: __metadata__ value '{}' is not a string", path, m.key());
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, name, v, data_size));
  }
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < entries.size(); ++i)
    RLHF_CHECK(entries[i].begin >= entries[i - 1].end || entries[i].begin == entries[i].end,
               "{}: tensors '{}' and '{}' have overlapping data_offsets", path,
               entries[i - 1].name, entries[i].name);
  for (const auto& e : entries) {
    auto t = torch::empty(e.shape, torch::dtype(e.dt.type));
    in.seekg(static_cast<std::streamoff>(data_start + e.begin));
    in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(e.end - e.begin));
    RLHF_CHECK(in.good(), "{}: read error in tensor '{}' (file truncated?)", path, e.name);
    out.tensors[e.name] = t.scalar_type() == torch::kFloat ? t : t.to(torch::kFloat);
  }
  return out;
}

void write_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::json h = nlohmann::json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  uint64_t off = 0;
  for (const auto& [name, t0] : tensors) {
    RLHF_CHECK(name != "__metadata__", "{}: a tensor may not be named __metadata__", path);
    auto t = t0.detach().to(torch::kCPU, torch::kFloat).contiguous();
    const uint64_t n = static_cast<uint64_t>(t.numel()) * 4;
    h[name] = {{"dtype", "F32"}, {"shape", t.sizes().vec()}, {"data_offsets", {off, off + n}}};
    off += n;
    data.push_back(t);
  }
  std::string header = h.dump();
  header.append((8 - (8 + header.size()) % 8) % 8, ' ');
  std::ofstream o(path, std::ios::binary | std::ios::trunc);
  RLHF_CHECK(o.good(), "cannot create '{}' (does the directory exist and is it writable?)", path);
  unsigned char lb[8];
  uint64_t hl = header.size();
  for (int i = 0; i < 8; ++i) lb[i] = static_cast<unsigned char>((hl >> (8 * i)) & 0xff);
  o.write(reinterpret_cast<const char*>(lb), 8);
  o.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const auto& t : data) o.write(static_cast<const char*>(t.data_ptr()), t.numel() * 4);
  o.flush();
  RLHF_CHECK(o.good(), "{}: write failed (disk full?)", path);
}

// ---- config.json ----------------------------------------------------------------------------
namespace {
struct JGet {
  const nlohmann::json& j;
  const std::string& where;
  bool has(const char* k) const { return j.contains(k) && !j[k].is_null(); }
  int64_t i(const char* k) const {
    RLHF_CHECK(has(k), "{}: required key '{}' missing", where, k);
    RLHF_CHECK(j[k].is_number_integer(), "{}: '{}' must be an integer, got {}", where, k, j[k].dump());
    return j[k].get<int64_t>();
  }
  int64_t i(const char* k, int64_t def) const { return has(k) ? i(k) : def; }
  double d(const char* k, double def) const {
    if (!has(k)) return def;
    RLHF_CHECK(j[k].is_number(), "{}: '{}' must be a number, got {}", where, k, j[k].dump());
    return j[k].get<double>();
  }
  bool b(const char* k, bool def) const {
    if (!has(k)) return def;
    RLHF_CHECK(j[k].is_boolean(), "{}: '{}' must be true/false, got {}", where, k, j[k].dump());
    return j[k].get<bool>();
  }
  std::string s(const char* k, const std::string& def) const {
    if (!has(k)) return def;
    RLHF_CHECK(j[k].is_string(), "{}: '{}' must be a string, got {}", where, k, j[k].dump());
    return j[k].get<std::string>();
  }
};
}  // namespace

ModelConfig config_from_hf(const nlohmann::json& j, const std::string& where) {
  RLHF_CHECK(j.is_object(), "{}: expected a JSON object", where);
  JGet g{j, where};
  const std::string mt = g.s("model_type", "");
  ModelConfig c;
  c.dropout = 0.0;  // training choice, not a property of the weights
  if (mt == "gpt2") {
    c.family = Family::GPT2;
    c.d_model = g.i("n_embd");
    c.n_layer = g.i("n_layer");
    c.n_head = g.i("n_head");
    c.n_kv_head = c.n_head;
    c.max_seq_len = g.i("n_positions");
    c.vocab_size = g.i("vocab_size");
    c.norm_eps = g.d("layer_norm_epsilon", 1e-5);
    c.d_ff = g.i("n_inner", 4 * c.d_model);
    c.tie_embeddings = g.b("tie_word_embeddings", true);
    const std::string act = g.s("activation_function", "gelu_new");
    RLHF_CHECK(act == "gelu_new" || act == "gelu_pytorch_tanh",
               "{}: activation_function '{}' is not supported (gpt2 family uses gelu_new)", where, act);
    RLHF_CHECK(g.b("scale_attn_weights", true) && !g.b("scale_attn_by_inverse_layer_idx", false),
               "{}: non-standard attention scaling is not supported", where);
  } else if (mt == "llama") {
    c.family = Family::Llama;
    c.d_model = g.i("hidden_size");
    c.d_ff = g.i("intermediate_size");
    c.n_head = g.i("num_attention_heads");
    c.n_kv_head = g.i("num_key_value_heads", c.n_head);
    c.n_layer = g.i("num_hidden_layers");
    c.max_seq_len = g.i("max_position_embeddings");
    c.norm_eps = g.d("rms_norm_eps", 1e-6);
    c.rope_theta = g.d("rope_theta", 10000.0);
    c.tie_embeddings = g.b("tie_word_embeddings", false);
    c.vocab_size = g.i("vocab_size");
    RLHF_CHECK(g.s("hidden_act", "silu") == "silu", "{}: hidden_act '{}' is not supported (silu)",
               where, g.s("hidden_act", ""));
    RLHF_CHECK(!g.has("rope_scaling"), "{}: rope_scaling {} is not supported", where,
               j["rope_scaling"].dump());
    RLHF_CHECK(!g.b("attention_bias", false) && !g.b("mlp_bias", false),
               "{}: attention_bias / mlp_bias are not supported", where);
    RLHF_CHECK(!g.has("head_dim") || g.i("head_dim") * c.n_head == c.d_model,
               "{}: head_dim {} != hidden_size / num_attention_heads", where, g.i("head_dim", 0));
  } else {
    throw Error(fmt::format("{}: model_type '{}' is not supported (expected 'gpt2' or 'llama')",
                            where, mt));
  }
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", where, e.what()));
  }
  return c;
}

nlohmann::json config_to_hf(const ModelConfig& c, int64_t bos_id, int64_t eos_id) {
  nlohmann::json j;
  if (c.family == Family::GPT2) {
    j = {{"architectures", {"GPT2LMHeadModel"}}, {"model_type", "gpt2"},
         {"vocab_size", c.vocab_size}, {"n_positions", c.max_seq_len}, {"n_ctx", c.max_seq_len},
         {"n_embd", c.d_model}, {"n_layer", c.n_layer}, {"n_head", c.n_head},
         {"n_inner", c.d_ff}, {"activation_function", "gelu_new"},
         {"layer_norm_epsilon", c.norm_eps}, {"resid_pdrop", c.dropout},
         {"embd_pdrop", c.dropout}, {"attn_pdrop", c.dropout}, {"initializer_range", 0.02},
         {"scale_attn_weights", true}, {"tie_word_embeddings", c.tie_embeddings}};
  } else {
    j = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"},
         {"vocab_size", c.vocab_size}, {"hidden_size", c.d_model},
         {"intermediate_size", c.d_ff}, {"num_hidden_layers", c.n_layer},
         {"num_attention_heads", c.n_head}, {"num_key_value_heads", c.n_kv_head},
         {"head_dim", c.head_dim()}, {"max_position_embeddings", c.max_seq_len},
         {"rms_norm_eps", c.norm_eps}, {"rope_theta", c.rope_theta}, {"rope_scaling", nullptr},
         {"tie_word_embeddings", c.tie_embeddings}, {"hidden_act", "silu"},
         {"attention_bias", false}, {"mlp_bias", false}, {"attention_dropout", c.dropout},
         {"initializer_range", 0.02}};
  }
  j["torch_dtype"] = "float32";
  if (bos_id >= 0) j["bos_token_id"] = bos_id;
  if (eos_id >= 0) j["eos_token_id"] = eos_id;
  return j;
}

// ---- tensor mapping -------------------------------------------------------------------------
namespace {
std::map<std::string, std::vector<int64_t>> parameter_shapes(const ModelConfig& c) {
  std::map<std::string, std::vector<int64_t>> s;
  const int64_t C = c.d_model, F = c.d_ff, V = c.vocab_size, D = c.head_dim();
  for (int64_t l = 0; l < c.n_layer; ++l) {
    if (c.family == Family::GPT2) {
      const std::string b = "transformer.h." + std::to_string(l) + ".";
      for (const char* n : {"ln_1", "ln_2"}) s[b + n + ".weight"] = s[b + n + ".bias"] = {C};
      s[b + "attn.c_attn.weight"] = {3 * C, C};
      s[b + "attn.c_attn.bias"] = {3 * C};
      s[b + "attn.c_proj.weight"] = {C, C};
      s[b + "attn.c_proj.bias"] = {C};
      s[b + "mlp.c_fc.weight"] = {F, C};
      s[b + "mlp.c_fc.bias"] = {F};
      s[b + "mlp.c_proj.weight"] = {C, F};
      s[b + "mlp.c_proj.bias"] = {C};
    } else {
      const std::string b = "model.layers." + std::to_string(l) + ".";
      s[b + "input_layernorm.weight"] = s[b + "post_attention_layernorm.weight"] = {C};
      s[b + "self_attn.q_proj.weight"] = {c.n_head * D, C};
      s[b + "self_attn.k_proj.weight"] = s[b + "self_attn.v_proj.weight"] = {c.n_kv_head * D, C};
      s[b + "self_attn.o_proj.weight"] = {C, c.n_head * D};
      s[b + "mlp.gate_proj.weight"] = s[b + "mlp.up_proj.weight"] = {F, C};
      s[b + "mlp.down_proj.weight"] = {C, F};
    }
  }
  if (c.family == Family::GPT2) {
    s["transformer.wte.weight"] = {V, C};
    s["transformer.wpe.weight"] = {c.max_seq_len, C};
    s["transformer.ln_f.weight"] = s["transformer.ln_f.bias"] = {C};
  } else {
    s["model.embed_tokens.weight"] = {V, C};
    s["model.norm.weight"] = {C};
  }
  if (!c.tie_embeddings) s["lm_head.weight"] = {V, C};
  return s;
}

bool is_conv1d(const ModelConfig& c, const std::string& n) {
  return c.family == Family::GPT2 &&
         (ends_with(n, "attn.c_attn.weight") || ends_with(n, "attn.c_proj.weight") ||
          ends_with(n, "mlp.c_fc.weight") || ends_with(n, "mlp.c_proj.weight"));
}
}  // namespace

std::map<std::string, torch::Tensor> tensors_from_hf(const ModelConfig& c,
                                                     const std::map<std::string, torch::Tensor>& hf,
                                                     const std::string& where) {
  const auto want = parameter_shapes(c);
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, t] : hf) {
    if (ends_with(name, ".attn.bias") && t.dim() == 4) continue;  // GPT-2 causal-mask buffer
    if (ends_with(name, ".attn.masked_bias") || ends_with(name, "rotary_emb.inv_freq")) continue;
    std::string n = name;
    if (c.family == Family::GPT2 && n != "lm_head.weight" && n.rfind("transformer.", 0) != 0)
      n = "transformer." + n;
    if (n == "lm_head.weight" && c.tie_embeddings) continue;  // tied: the embedding is the head
    auto it = want.find(n);
    RLHF_CHECK(it != want.end(), "{}: unexpected tensor '{}' (not a parameter of this {} model)",
               where, name, family_name(c.family));
    RLHF_CHECK(!out.count(n), "{}: tensor '{}' appears twice (with and without the 'transformer.' "
               "prefix)", where, n);
    torch::Tensor v = t;
    if (is_conv1d(c, n)) {
      RLHF_CHECK(t.dim() == 2 && t.size(0) == it->second[1] && t.size(1) == it->second[0],
                 "{}: tensor '{}' has shape {} but a Conv1D [in, out] of shape [{}, {}] was expected",
                 where, name, shape_str(t.sizes()), it->second[1], it->second[0]);
      v = t.t().contiguous();
    }
    RLHF_CHECK(v.sizes() == torch::IntArrayRef(it->second),
               "{}: tensor '{}' has shape {} but the config implies {}", where, name,
               shape_str(v.sizes()), shape_str(it->second));
    out[n] = v;
  }
  std::vector<std::string> missing;
  for (const auto& [n, s] : want)
    if (!out.count(n)) missing.push_back(n);
  RLHF_CHECK(missing.empty(), "{}: {} tensor(s) missing: {}", where, missing.size(),
             fmt::join(missing, ", "));
  return out;
}

std::map<std::string, torch::Tensor> tensors_to_hf(const ModelConfig& c,
                                                   const std::map<std::string, torch::Tensor>& native) {
  const auto want = parameter_shapes(c);
  std::map<std::string, torch::Tensor> out;
  for (const auto& [n, t] : native) {
    RLHF_CHECK(want.count(n), "to-hf: tensor '{}' is not a parameter of a {} causal LM", n,
               family_name(c.family));
    out[n] = is_conv1d(c, n) ? t.t().contiguous() : t;
  }
  return out;
}

}  // namespace rlhf
