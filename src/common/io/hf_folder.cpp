// hf_folder.cpp — Hugging Face folder import/export (see hf_folder.h).
#include "common/io/hf_folder.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "common/core/check.h"
#include "common/io/hf_config.h"
#include "common/core/fs.h"
#include "common/io/safetensors.h"

namespace fs = std::filesystem;

namespace rlhf {

namespace {


void write_json_file(const std::string& path, const nlohmann::json& j) {
  write_file_atomic(path, j.dump(2) + "\n");  // fsync'd temp + rename; errors name the file
}

// shard file -> the tensors the index maps to it
std::map<std::string, std::set<std::string>> shards_of_index(const std::string& idx,
                                                             const nlohmann::json& j) {
  RLHF_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
             "{}: no \"weight_map\" object", idx);
  std::map<std::string, std::set<std::string>> shards;
  for (auto& [k, v] : j["weight_map"].items()) {
    RLHF_CHECK(v.is_string(), "{}: weight_map entry '{}' must be a file name, got {}", idx, k,
               v.dump());
    const std::string s = v.get<std::string>();
    RLHF_CHECK(!s.empty() && s.find("..") == std::string::npos && s[0] != '/',
               "{}: weight_map entry '{}' names a shard outside the folder: '{}'", idx, k, s);
    shards[s].insert(k);
  }
  RLHF_CHECK(!shards.empty(), "{}: weight_map is empty", idx);
  return shards;
}

}  // namespace

HfWeights read_hf_weights(const std::string& dir) {
  const fs::path d(dir);
  HfWeights w;
  w.where = (d / "model.safetensors").string();
  if (fs::exists(w.where)) {
    w.tensors = read_safetensors(w.where).tensors;
    return w;
  }
  const std::string idx = (d / "model.safetensors.index.json").string();
  RLHF_CHECK(fs::exists(idx), "'{}' has neither model.safetensors nor "
             "model.safetensors.index.json", dir);
  w.where = idx;
  for (const auto& [shard, names] : shards_of_index(idx, read_json_file(idx))) {
    const std::string path = (d / shard).string();
    RLHF_CHECK(fs::exists(path), "{}: shard '{}' (holding tensor '{}') not found: {}", idx, shard,
               *names.begin(), path);
    auto got = read_safetensors(path).tensors;
    for (const auto& n : names)
      RLHF_CHECK(got.count(n), "{}: tensor '{}' is mapped to shard '{}' but is not in {}", idx, n,
                 shard, path);
    for (auto& [n, t] : got) {
      RLHF_CHECK(!w.tensors.count(n), "{}: tensor '{}' appears in more than one shard (again in "
                 "{})", idx, n, path);
      w.tensors[n] = t;
    }
  }
  return w;
}

ModelFile import_hf_folder(const std::string& dir) {
  const fs::path d(dir);
  RLHF_CHECK(fs::is_directory(d), "'{}' is not a directory", dir);
  const std::string cfg_path = (d / "config.json").string();
  RLHF_CHECK(fs::exists(cfg_path), "'{}' has no config.json", dir);
  ModelFile f;
  const nlohmann::json j = read_json_file(cfg_path);
  f.cfg = config_from_hf(j, cfg_path);
  const bool scalar = hf_is_sequence_classifier(j, cfg_path);
  f.kind = scalar ? "scalar" : "causal_lm";
  HfWeights w = read_hf_weights(dir);
  f.tensors = tensors_from_hf(f.cfg, w.tensors, w.where, scalar);
  if (scalar && j.contains("rlhf_score_bias")) {  // our own export with --drop-score-bias
    RLHF_CHECK(j["rlhf_score_bias"].is_number(), "{}: 'rlhf_score_bias' must be a number",
               cfg_path);
    f.tensors["score.bias"] = torch::full({1}, j["rlhf_score_bias"].get<double>());
  }
  f.extra = {{"source", "hf"}, {"source_dir", fs::absolute(d).string()}};
  return f;
}

namespace {
// Name-ordered groups of tensors of at most max_bytes each (a lone oversized tensor gets its own).
std::vector<std::map<std::string, torch::Tensor>> split_shards(
    const std::map<std::string, torch::Tensor>& t, int64_t elem, int64_t max_bytes) {
  std::vector<std::map<std::string, torch::Tensor>> out(1);
  int64_t cur = 0;
  for (const auto& [n, x] : t) {
    const int64_t b = x.numel() * elem;
    if (max_bytes > 0 && cur > 0 && cur + b > max_bytes) {
      out.emplace_back();
      cur = 0;
    }
    out.back()[n] = x;
    cur += b;
  }
  return out;
}
}  // namespace

void export_hf_folder(const ModelFile& f, const std::string& out, const HfExportOptions& opt) {
  const std::string src = f.path.empty() ? std::string("model") : f.path;
  RLHF_CHECK(f.kind == "causal_lm" || f.kind == "scalar",
             "{}: to-hf exports causal_lm and scalar models, not '{}'", src, f.kind);
  RLHF_CHECK(opt.dtype == torch::kFloat || opt.dtype == torch::kBFloat16,
             "to-hf: dtype must be fp32 or bf16");
  const bool scalar = f.kind == "scalar";
  HfConfigIds ids{f.tok.bos, f.tok.eos, f.tok.pad >= 0 ? f.tok.pad : f.tok.eos};
  if (!scalar) ids.pad = f.tok.pad;
  nlohmann::json cfg = config_to_hf(f.cfg, ids, scalar);
  cfg["torch_dtype"] = opt.dtype == torch::kFloat ? "float32" : "bfloat16";
  if (scalar) {
    auto it = f.tensors.find("score.bias");
    RLHF_CHECK(it != f.tensors.end(), "{}: scalar model without score.bias", src);
    const double b = it->second.item<double>();
    RLHF_CHECK(b == 0.0 || opt.drop_score_bias,
               "{}: score.bias = {} is non-zero, but Hugging Face's *ForSequenceClassification "
               "score has no bias; pass --drop-score-bias to export without it (HF's scores are "
               "then ours - {}, recorded as config.json 'rlhf_score_bias')", src, b, b);
    if (b != 0.0) cfg["rlhf_score_bias"] = b;
  }
  const auto hf = tensors_to_hf(f.cfg, f.tensors, scalar);
  fs::create_directories(out);
  for (const auto& e : fs::directory_iterator(out)) {  // stale weights of an earlier export
    const std::string n = e.path().filename().string();
    if (n == "model.safetensors" || n == "model.safetensors.index.json" ||
        (n.rfind("model-", 0) == 0 && n.find("-of-") != std::string::npos))
      fs::remove(e.path());
  }
  const int64_t elem = opt.dtype == torch::kFloat ? 4 : 2;
  const auto shards = split_shards(hf, elem, opt.max_shard_bytes);
  if (shards.size() == 1) {
    write_safetensors((fs::path(out) / "model.safetensors").string(), hf, {{"format", "pt"}},
                      opt.dtype);
  } else {
    nlohmann::json map = nlohmann::json::object();
    int64_t total = 0;
    for (size_t i = 0; i < shards.size(); ++i) {
      const std::string name = fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1,
                                           shards.size());
      write_safetensors((fs::path(out) / name).string(), shards[i], {{"format", "pt"}}, opt.dtype);
      for (const auto& [n, t] : shards[i]) {
        map[n] = name;
        total += t.numel() * elem;
      }
    }
    write_json_file((fs::path(out) / "model.safetensors.index.json").string(),
                    {{"metadata", {{"total_size", total}}}, {"weight_map", map}});
  }
  write_json_file((fs::path(out) / "config.json").string(), cfg);
}

}  // namespace rlhf
