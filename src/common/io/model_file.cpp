#include "common/io/model_file.h"

#include <filesystem>
#include <fstream>
#include <set>

#include <fmt/ranges.h>

#include "common/core/check.h"
#include "common/core/fs.h"
#include "common/core/strings.h"
#include "common/core/h5.h"

namespace rlhf {

namespace fs = std::filesystem;

nlohmann::json TokenizerInfo::to_json() const {
  nlohmann::json j = {{"spec", spec}, {"identity", identity}, {"bos", bos}, {"eos", eos},
                      {"pad", pad},   {"vocab_size", vocab_size}, {"stops", stops}};
  if (!chat_template.empty()) {
    j["chat_template"] = chat_template;
    j["chat_template_name"] = chat_template_name;
    j["end_of_turn"] = end_of_turn;
  }
  return j;
}

TokenizerInfo TokenizerInfo::from_json(const nlohmann::json& j) {
  RLHF_CHECK(j.is_object(), "tokenizer info: expected a JSON object, got {}", j.dump());
  TokenizerInfo t;
  auto str = [&](const char* k, std::string& dst) {
    RLHF_CHECK(j.contains(k) && j[k].is_string(), "tokenizer info: '{}' missing or not a string", k);
    dst = j[k].get<std::string>();
  };
  auto num = [&](const char* k, int64_t& dst) {
    RLHF_CHECK(j.contains(k) && j[k].is_number_integer(),
               "tokenizer info: '{}' missing or not an integer", k);
    dst = j[k].get<int64_t>();
  };
  str("spec", t.spec);
  str("identity", t.identity);
  num("bos", t.bos);
  num("eos", t.eos);
  num("pad", t.pad);
  num("vocab_size", t.vocab_size);
  if (j.contains("stops")) {
    RLHF_CHECK(j["stops"].is_array(), "tokenizer info: 'stops' must be a list of ids");
    t.stops = j["stops"].get<std::vector<int64_t>>();
  }
  if (j.contains("chat_template")) {
    str("chat_template", t.chat_template);
    str("chat_template_name", t.chat_template_name);
    num("end_of_turn", t.end_of_turn);
  }
  return t;
}

TokenizerInfo TokenizerInfo::of(const Tokenizer& tk) {
  TokenizerInfo t;
  t.spec = tk.spec();
  t.identity = tk.identity();
  t.bos = tk.bos_id();
  t.eos = tk.eos_id();
  t.pad = tk.pad_id();
  t.vocab_size = tk.vocab_size();
  for (int32_t s : tk.stop_ids())
    if (s != t.eos) t.stops.push_back(s);
  return t;
}

void save_model_file(const std::string& path, const ModelFile& f) {
  RLHF_CHECK(f.kind == "causal_lm" || f.kind == "scalar",
             "{}: model kind must be 'causal_lm' or 'scalar', got '{}'", path, f.kind);
  // The model folder carries its tokenizer: copied beside model.h5, referenced relatively.
  TokenizerInfo tok = f.tok;
  tok.spec = copy_tokenizer(tok.spec, fs::absolute(path).parent_path().string());
  // Through a temporary file, fsync'd and renamed: a failed write (a full disk) leaves no partial
  // model.h5 and an existing one untouched; close() reports what the disk refused.
  replace_file_atomic(path, [&](const std::string& tmp) {
    H5File h = H5File::create(tmp);
    for (const auto& [name, t] : f.tensors) h.write_tensor(name, t.detach().to(torch::kCPU, torch::kFloat));
    h.set_attr("format_version", kModelFormatVersion);
    h.set_attr("kind", f.kind);
    h.set_attr("model_config", f.cfg.to_json().dump());
    h.set_attr("tokenizer", tok.to_json().dump());
    h.set_attr("extra", (f.extra.is_null() ? nlohmann::json::object() : f.extra).dump());
    if (!f.lora.is_null()) h.set_attr("lora", f.lora.dump());
    h.close();
  });
}

void save_model_h5(const std::string& path, torch::nn::Module& m, const ModelConfig& cfg,
                   const TokenizerInfo& tok, const std::string& kind, const nlohmann::json& extra) {
  ModelFile f;
  f.cfg = cfg;
  f.tok = tok;
  f.kind = kind;
  f.extra = extra;
  const LoraInfo* lora = lora_info(m);
  if (lora) f.lora = lora->to_json();
  for (auto& p : m.named_parameters())
    if (!lora || lora_owns(p.key(), p.value())) f.tensors[p.key()] = p.value();
  save_model_file(path, f);
}

static nlohmann::json json_attr(const H5File& h, const std::string& key) {
  RLHF_CHECK(h.has_attr(key), "{}: not a model.h5 file (attribute '{}' missing)", h.path(), key);
  try {
    return nlohmann::json::parse(h.attr_string(key));
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: attribute '{}' is not valid JSON: {}", h.path(), key, e.what()));
  }
}

namespace {

ModelFile read_attributes(const H5File& h, const std::string& path) {
  RLHF_CHECK(h.has_attr("format_version"),
             "{}: not a model.h5 file (no 'format_version' attribute; written by something else?)",
             path);
  const int64_t ver = h.attr_int("format_version");
  RLHF_CHECK(ver == kModelFormatVersion, "{}: model.h5 format_version {} is not supported (expected {})",
             path, ver, kModelFormatVersion);
  ModelFile f;
  f.path = path;
  RLHF_CHECK(h.has_attr("kind"), "{}: not a model.h5 file (attribute 'kind' missing)", path);
  f.kind = h.attr_string("kind");
  RLHF_CHECK(f.kind == "causal_lm" || f.kind == "scalar",
             "{}: attribute 'kind' is '{}', expected 'causal_lm' or 'scalar'", path, f.kind);
  try {
    f.cfg = ModelConfig::from_json(json_attr(h, "model_config"));
    f.tok = TokenizerInfo::from_json(json_attr(h, "tokenizer"));
    f.tok.spec = resolve_tokenizer_spec(f.tok.spec, fs::absolute(path).parent_path().string());
  } catch (const Error& e) {
    if (std::string(e.what()).rfind(path, 0) == 0) throw;
    throw Error(fmt::format("{}: {}", path, e.what()));
  }
  f.extra = h.has_attr("extra") ? json_attr(h, "extra") : nlohmann::json::object();
  if (h.has_attr("lora")) f.lora = LoraInfo::from_json(json_attr(h, "lora"), path).to_json();
  return f;
}

nlohmann::json arch_json(const ModelConfig& c) {  // what a base and its adapters must share
  nlohmann::json j = c.to_json();
  j.erase("dropout");
  j.erase("activation_checkpointing");
  return j;
}

ModelFile read_model(const std::string& path, LoraLoad mode, int depth) {
  H5File h = H5File::open_read(path);
  ModelFile f = read_attributes(h, path);
  for (const auto& name : h.datasets()) {
    torch::Tensor t = h.read_tensor(name);
    RLHF_CHECK(t.scalar_type() == torch::kFloat, "{}: tensor '{}' has dtype {}, expected float32",
               path, name, c10::toString(t.scalar_type()));
    f.tensors[name] = t;
  }
  RLHF_CHECK(!f.extra.value("header_only", false),
             "{}: holds no weights (written by rlhf_convert init --header-only, for --dry-run "
             "memory planning only)", path);
  if (f.lora.is_null()) return f;
  const LoraInfo info = LoraInfo::from_json(f.lora, path);
  RLHF_CHECK(depth < 8, "{}: LoRA base chain is deeper than 8 files (a cycle?)", path);
  RLHF_CHECK(fs::is_regular_file(info.base),
             "{}: its LoRA adapters need the base model '{}', which does not exist (moved or "
             "deleted?). Restore it, or merge while it exists: rlhf_convert merge-lora", path,
             info.base);
  ModelFile base = read_model(info.base, LoraLoad::Merge, depth + 1);
  const std::string fp = base_fingerprint(base.tensors);
  RLHF_CHECK(fp == info.base_fingerprint,
             "{}: its base model '{}' has changed since the adapters were trained (fingerprint {} "
             "recorded, {} now)", path, info.base, info.base_fingerprint, fp);
  RLHF_CHECK(arch_json(base.cfg) == arch_json(f.cfg),
             "{}: model_config differs from its base model '{}'", path, info.base);
  if (f.kind == "scalar") base.tensors.erase("lm_head.weight");
  for (auto& [name, t] : f.tensors) base.tensors[name] = t;
  f.tensors = std::move(base.tensors);
  if (mode == LoraLoad::Merge) {
    merge_lora_tensors(f.tensors, info.opt, path);
    f.lora = nullptr;
  }
  return f;
}

}  // namespace

ModelFile read_model_header(const std::string& path) {
  return read_attributes(H5File::open_read(path), path);
}

ModelFile read_model_h5(const std::string& path, LoraLoad mode) { return read_model(path, mode, 0); }

void load_parameters(torch::nn::Module& m, const ModelFile& f,
                     const std::vector<std::string>& allow_missing, bool ignore_unexpected) {
  const std::string src = f.path.empty() ? std::string("model file") : f.path;
  const std::set<std::string> allowed(allow_missing.begin(), allow_missing.end());
  auto params = m.named_parameters();
  std::vector<std::string> missing, unexpected;
  for (auto& p : params) {
    auto it = f.tensors.find(p.key());
    if (it == f.tensors.end()) {
      if (!allowed.count(p.key())) missing.push_back(p.key());
      continue;
    }
    RLHF_CHECK(it->second.sizes() == p.value().sizes(),
               "{}: tensor '{}' has shape [{}] in the file but the model expects [{}]", src,
               p.key(), shape_str(it->second), shape_str(p.value()));
  }
  RLHF_CHECK(missing.empty(), "{}: {} parameter(s) missing from the file: {}", src, missing.size(),
             fmt::join(missing, ", "));
  for (const auto& [name, t] : f.tensors)
    if (!params.contains(name)) unexpected.push_back(name);
  RLHF_CHECK(unexpected.empty() || ignore_unexpected,
             "{}: {} tensor(s) in the file are not parameters of the model: {}", src,
             unexpected.size(), fmt::join(unexpected, ", "));
  for (auto& p : params) {  // a NaN/Inf weight would make every step non-finite
    auto it = f.tensors.find(p.key());
    if (it != f.tensors.end() && it->second.is_floating_point())
      RLHF_CHECK(torch::isfinite(it->second).all().item<bool>(),
                 "{}: tensor '{}' holds non-finite values (NaN or Inf): the model file is corrupt", src,
                 p.key());
  }
  torch::NoGradGuard ng;
  for (auto& p : params) {
    auto it = f.tensors.find(p.key());
    if (it != f.tensors.end()) p.value().copy_(it->second);
  }
}

std::string resolve_model_path(const std::string& ckpt) {
  RLHF_CHECK(!ckpt.empty(), "empty checkpoint path");
  RLHF_CHECK(fs::exists(ckpt), "checkpoint '{}' does not exist", ckpt);
  if (fs::is_regular_file(ckpt)) return ckpt;
  const fs::path d(ckpt);
  if (fs::is_regular_file(d / "model.h5")) return (d / "model.h5").string();
  for (const fs::path& root : {d / "checkpoints", d}) {
    const fs::path latest = root / "latest";
    if (!fs::is_regular_file(latest)) continue;
    std::ifstream in(latest);
    std::string name;
    std::getline(in, name);
    while (!name.empty() && (name.back() == '\r' || name.back() == ' ')) name.pop_back();
    RLHF_CHECK(!name.empty(), "'{}' is empty (expected the name of a checkpoint directory)",
               latest.string());
    const fs::path model = root / name / "model.h5";
    RLHF_CHECK(fs::is_regular_file(model), "'{}' names '{}', but '{}' does not exist",
               latest.string(), name, model.string());
    return model.string();
  }
  // A Hugging Face folder where a checkpoint is expected: say the one command that imports it.
  if (fs::is_regular_file(d / "config.json") &&
      (fs::is_regular_file(d / "model.safetensors") || fs::is_regular_file(d / "model.safetensors.index.json"))) {
    const std::string out = (d.has_filename() ? d : d.parent_path()).string() + "-rlhf";
    throw Error(fmt::format("'{}' is a Hugging Face model folder, not a checkpoint: import it once with "
                            "`rlhf_convert from-hf --in {} --out {}` and give {} instead", ckpt, ckpt, out, out));
  }
  throw Error(fmt::format("'{}' is neither a model.h5 file, a checkpoint directory (with model.h5) "
                          "nor a run directory (with checkpoints/latest)", ckpt));
}

namespace {
// A checkpoint of the given kind, loaded onto `dev` in eval mode.
template <class Model>
Model load_model_of_kind(const std::string& ckpt, const char* kind, const char* what,
                         const torch::Device& dev, ModelFile* file_out) {
  ModelFile f = read_model_h5(resolve_model_path(ckpt));
  RLHF_CHECK(f.kind == kind, "{}: expected a {} ({}) checkpoint, found kind '{}'", ckpt, what, kind,
             f.kind);
  Model m(f.cfg);
  load_parameters(*m, f);
  m->to(dev);
  m->eval();
  if (file_out) *file_out = std::move(f);
  return m;
}
}  // namespace

CausalLM load_causal_lm(const std::string& ckpt, const torch::Device& dev, ModelFile* file_out) {
  return load_model_of_kind<CausalLM>(ckpt, "causal_lm", "policy", dev, file_out);
}

ScalarModel load_scalar_model(const std::string& ckpt, const torch::Device& dev, ModelFile* file_out) {
  return load_model_of_kind<ScalarModel>(ckpt, "scalar", "reward model", dev, file_out);
}

}  // namespace rlhf
