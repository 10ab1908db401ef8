// rlhf_convert's commands (see convert.h); main.cpp only parses the command line.
#include "tools/convert/convert.h"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "common/core/check.h"
#include "common/dist/dist.h"
#include "common/io/llama2c_import.h"
#include "common/io/model_file.h"
#include "common/io/safetensors.h"
#include "common/model/model.h"
#include "common/tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace rlhf {
namespace {

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  RLHF_CHECK(in.good(), "cannot open '{}'", path);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: invalid JSON: {}", path, e.what()));
  }
}

// Copies the tokenizer files into ckpt and returns the spec of the copy.
void write_checkpoint(ModelFile& f, const std::string& ckpt, const std::string& tok_spec) {
  fs::create_directories(ckpt);
  auto tok = load_tokenizer(tok_spec);  // save_model_file copies its files into the checkpoint
  RLHF_CHECK(tok->vocab_size() <= f.cfg.vocab_size,
             "tokenizer '{}' has {} tokens but the model's vocab_size is {}", tok_spec,
             tok->vocab_size(), f.cfg.vocab_size);
  f.tok = TokenizerInfo::of(*tok);
  const std::string out = (fs::path(ckpt) / "model.h5").string();
  save_model_file(out, f);
  int64_t n = 0;
  for (auto& [k, t] : f.tensors) n += t.numel();
  std::cerr << fmt::format("wrote {}: {} {} (d_model {}, {} layers, vocab {}), {} tensors, {} "
                           "parameters, tokenizer {}\n", out, f.kind, family_name(f.cfg.family),
                           f.cfg.d_model, f.cfg.n_layer, f.cfg.vocab_size, f.tensors.size(), n,
                           f.tok.identity);
}

}  // namespace

int from_hf(const std::string& in, const std::string& out, const std::string& tok_opt) {
  const fs::path d(in);
  RLHF_CHECK(fs::is_directory(d), "'{}' is not a directory", in);
  const std::string cfg_path = (d / "config.json").string();
  RLHF_CHECK(fs::exists(cfg_path), "'{}' has no config.json", in);
  ModelFile f;
  f.kind = "causal_lm";
  f.cfg = config_from_hf(read_json(cfg_path), cfg_path);
  std::map<std::string, torch::Tensor> hf;
  std::string where = (d / "model.safetensors").string();
  if (fs::exists(where)) {
    hf = read_safetensors(where).tensors;
  } else {
    const std::string idx = (d / "model.safetensors.index.json").string();
    RLHF_CHECK(fs::exists(idx), "'{}' has neither model.safetensors nor "
               "model.safetensors.index.json", in);
    auto j = read_json(idx);
    RLHF_CHECK(j.contains("weight_map") && j["weight_map"].is_object(), "{}: no weight_map", idx);
    std::set<std::string> shards;
    for (auto& [k, v] : j["weight_map"].items()) shards.insert(v.get<std::string>());
    for (const auto& s : shards)
      for (auto& [k, t] : read_safetensors((d / s).string()).tensors) hf[k] = t;
    where = idx;
  }
  f.tensors = tensors_from_hf(f.cfg, hf, where);
  f.extra = {{"source", "hf"}, {"source_dir", fs::absolute(d).string()}};
  std::string spec = tok_opt;  // default: the folder's own (tokenizer.json, tokenizer.model, vocab.json)
  if (spec.empty()) {
    RLHF_CHECK(fs::exists(d / "tokenizer.json") || fs::exists(d / "tokenizer.model") ||
                   (fs::exists(d / "vocab.json") && fs::exists(d / "merges.txt")),
               "'{}' has no tokenizer.json, tokenizer.model or vocab.json + merges.txt; pass "
               "--tokenizer SPEC", in);
    spec = fs::absolute(d).string();
  }
  write_checkpoint(f, out, spec);
  return 0;
}

int to_hf(const std::string& in, const std::string& out) {
  const std::string path = resolve_model_path(in);
  ModelFile f = read_model_h5(path);
  RLHF_CHECK(f.kind == "causal_lm", "{}: to-hf exports causal_lm checkpoints only (this is '{}')",
             path, f.kind);
  fs::create_directories(out);
  write_safetensors((fs::path(out) / "model.safetensors").string(), tensors_to_hf(f.cfg, f.tensors),
                    {{"format", "pt"}});
  {
    std::ofstream c(fs::path(out) / "config.json");
    c << config_to_hf(f.cfg, f.tok.bos, f.tok.eos).dump(2) << "\n";
    RLHF_CHECK(c.good(), "cannot write {}/config.json", out);
  }
  if (f.tok.spec != "byte" && f.tok.identity.rfind("llama2c:", 0) != 0)
    copy_tokenizer(f.tok.spec, out, /*flat=*/true);  // llama2.c's .bin means nothing to HF
  std::cerr << fmt::format("wrote {}/model.safetensors and config.json from {} ({} tensors)\n", out,
                           path, f.tensors.size());
  return 0;
}

int from_llama2c(const std::string& model, const std::string& tok, const std::string& out) {
  ModelFile f = import_llama2c(model);
  write_checkpoint(f, out, tok);
  return 0;
}

int init_model(const std::string& family, const std::string& cfg_json, const std::string& tok_spec,
               uint64_t seed, const std::string& kind, const std::string& out) {
  nlohmann::json j = nlohmann::json::object();
  if (!cfg_json.empty()) {
    try {
      j = cfg_json[0] == '@' ? read_json(cfg_json.substr(1)) : nlohmann::json::parse(cfg_json);
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("--config-json: invalid JSON: {}", e.what()));
    }
  }
  RLHF_CHECK(j.is_object(), "--config-json must be a JSON object");
  j["family"] = family;
  if (!j.contains("vocab_size")) j["vocab_size"] = load_tokenizer(tok_spec)->vocab_size();
  if (!j.contains("n_kv_head") && j.contains("n_head")) j["n_kv_head"] = j["n_head"];
  ModelFile f;
  f.cfg = ModelConfig::from_json(j);
  f.kind = kind;
  f.extra = {{"source", "init"}, {"seed", seed}};
  torch::manual_seed(seed);
  std::shared_ptr<torch::nn::Module> m;
  if (kind == "causal_lm") m = CausalLM(f.cfg).ptr();
  else if (kind == "scalar") m = ScalarModel(f.cfg).ptr();
  else throw Error(fmt::format("--kind must be causal_lm or scalar, got '{}'", kind));
  for (auto& p : m->named_parameters()) f.tensors[p.key()] = p.value().detach();
  write_checkpoint(f, out, tok_spec);
  return 0;
}

int dump_logits(const std::string& in, const std::string& out, uint64_t seed, int64_t batch,
                int64_t len, const std::string& device) {
  const std::string path = resolve_model_path(in);
  ModelFile f = read_model_h5(path);
  RLHF_CHECK(f.kind == "causal_lm", "{}: logits needs a causal_lm checkpoint", path);
  RLHF_CHECK(batch > 0 && len > 0 && len <= f.cfg.max_seq_len,
             "logits: need batch > 0 and 0 < len <= max_seq_len ({})", f.cfg.max_seq_len);
  const torch::Device dev = parse_device(device, world());
  CausalLM m(f.cfg);
  load_parameters(*m, f);
  m->to(dev);
  m->eval();
  torch::manual_seed(seed);
  auto tokens = torch::randint(0, f.cfg.vocab_size, {batch, len}, torch::kLong);  // [B, T]
  auto mask = torch::ones({batch, len}, torch::kBool);                            // [B, T]
  for (int64_t b = 1; b < batch; b += 2) {
    const int64_t pad = std::min<int64_t>(len - 1, 1 + b);
    mask[b].narrow(0, 0, pad).fill_(false);
    tokens[b].narrow(0, 0, pad).fill_(0);
  }
  torch::NoGradGuard ng;
  auto logits = m->forward(tokens.to(dev), positions_from_mask(mask).to(dev), mask.to(dev));
  write_safetensors(out, {{"tokens", tokens.to(torch::kFloat)}, {"mask", mask.to(torch::kFloat)},
                          {"logits", logits.to(torch::kCPU)}});
  std::cerr << fmt::format("wrote {}: logits [{}, {}, {}] of {} on {}\n", out, batch, len,
                           f.cfg.vocab_size, path, dev.str());
  return 0;
}

}  // namespace rlhf

