#include "common/io/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <fmt/ranges.h>

#include "common/core/check.h"
#include "common/core/fs.h"
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
                       const std::map<std::string, std::string>& metadata,
                       torch::ScalarType dtype) {
  const char* dname = dtype == torch::kFloat ? "F32" : dtype == torch::kBFloat16 ? "BF16"
                    : dtype == torch::kHalf ? "F16" : nullptr;
  RLHF_CHECK(dname, "{}: write_safetensors supports float32, bfloat16 and float16, not {}", path,
             c10::toString(dtype));
  const int64_t esize = static_cast<int64_t>(c10::elementSize(dtype));
  nlohmann::json h = nlohmann::json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  uint64_t off = 0;
  for (const auto& [name, t0] : tensors) {
    RLHF_CHECK(name != "__metadata__", "{}: a tensor may not be named __metadata__", path);
    auto t = t0.detach().to(torch::kCPU, dtype).contiguous();
    const uint64_t n = static_cast<uint64_t>(t.numel() * esize);
    h[name] = {{"dtype", dname}, {"shape", t.sizes().vec()}, {"data_offsets", {off, off + n}}};
    off += n;
    data.push_back(t);
  }
  std::string header = h.dump();
  header.append((8 - (8 + header.size()) % 8) % 8, ' ');
  // Through a temporary file, fsync'd and renamed (core/fs.h): a failed write leaves no partial
  // file and an existing one untouched.
  replace_file_atomic(path, [&](const std::string& tmp) {
    std::ofstream o(tmp, std::ios::binary | std::ios::trunc);
    RLHF_CHECK(o.good(), "cannot create '{}' (does the directory exist and is it writable?)", tmp);
    unsigned char lb[8];
    uint64_t hl = header.size();
    for (int i = 0; i < 8; ++i) lb[i] = static_cast<unsigned char>((hl >> (8 * i)) & 0xff);
    o.write(reinterpret_cast<const char*>(lb), 8);
    o.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (const auto& t : data) o.write(static_cast<const char*>(t.data_ptr()), t.numel() * esize);
    o.close();
    RLHF_CHECK(!o.fail(), "{}: write failed: {}", path, std::strerror(errno));
  });
}

// ---- tensor mapping -------------------------------------------------------------------------
namespace {
// Every parameter of the model with its shape; `scalar`: ScalarModel's score head instead of the
// LM head.
std::map<std::string, std::vector<int64_t>> parameter_shapes(const ModelConfig& c, bool scalar) {
  std::map<std::string, std::vector<int64_t>> s;
  const int64_t C = c.d_model, F = c.d_ff, V = c.vocab_size, D = c.head_dim();
  const int64_t Q = c.n_head * D, KV = c.n_kv_head * D;
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
      continue;
    }
    const std::string b = "model.layers." + std::to_string(l) + ".", a = b + "self_attn.";
    s[b + "input_layernorm.weight"] = s[b + "post_attention_layernorm.weight"] = {C};
    s[a + "q_proj.weight"] = {Q, C};
    s[a + "k_proj.weight"] = s[a + "v_proj.weight"] = {KV, C};
    s[a + "o_proj.weight"] = {C, Q};
    if (c.qkv_bias) {
      s[a + "q_proj.bias"] = {Q};
      s[a + "k_proj.bias"] = s[a + "v_proj.bias"] = {KV};
    }
    if (c.o_bias) s[a + "o_proj.bias"] = {C};
    if (c.qk_norm) s[a + "q_norm.weight"] = s[a + "k_norm.weight"] = {D};
    s[b + "mlp.gate_proj.weight"] = s[b + "mlp.up_proj.weight"] = {F, C};
    s[b + "mlp.down_proj.weight"] = {C, F};
    if (c.mlp_bias) {
      s[b + "mlp.gate_proj.bias"] = s[b + "mlp.up_proj.bias"] = {F};
      s[b + "mlp.down_proj.bias"] = {C};
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
  if (scalar) {
    s["score.weight"] = {1, C};
    s["score.bias"] = {1};
  } else if (!c.tie_embeddings) {
    s["lm_head.weight"] = {V, C};
  }
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
                                                     const std::string& where, bool scalar) {
  auto want = parameter_shapes(c, scalar);
  if (scalar) want.erase("score.bias");  // HF's score head has none: added as zero below
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
  if (scalar) out["score.bias"] = torch::zeros({1});
  return out;
}

std::map<std::string, torch::Tensor> tensors_to_hf(const ModelConfig& c,
                                                   const std::map<std::string, torch::Tensor>& native,
                                                   bool scalar) {
  const auto want = parameter_shapes(c, scalar);
  std::map<std::string, torch::Tensor> out;
  for (const auto& [n, t] : native) {
    RLHF_CHECK(want.count(n), "to-hf: tensor '{}' is not a parameter of a {} {}", n,
               family_name(c.family), scalar ? "scalar model" : "causal LM");
    if (n == "score.bias") continue;  // no bias in HF's score head: the exporter decides
    out[n] = is_conv1d(c, n) ? t.t().contiguous() : t;
  }
  return out;
}

}  // namespace rlhf
