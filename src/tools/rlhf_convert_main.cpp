// rlhf_convert — model format conversion (single process; logs on stderr, nothing on stdout).
//   from-hf      --in HF_DIR --out CKPT [--tokenizer SPEC]
//                HF_DIR: config.json + model.safetensors (or model.safetensors.index.json shards).
//                Tokenizer: HF_DIR's vocab.json + merges.txt (GPT-2 BPE) when present, else SPEC.
//   to-hf        --in CKPT --out HF_DIR   (model.safetensors F32, config.json; vocab.json and
//                merges.txt copied when the checkpoint's tokenizer is GPT-2)
//   from-llama2c --model FILE.bin --tokenizer TOK.bin --out CKPT
//   init         --family gpt2|llama --tokenizer SPEC --out CKPT [--config-json JSON|@FILE]
//                [--seed S] [--kind causal_lm|scalar]   a freshly initialised model (tests, parity)
//   logits       --in CKPT --out FILE.safetensors [--seed S --batch B --len T --device D]
//                parity aid: random tokens [B, T] (odd rows left-padded), writes tensors
//                "tokens", "mask" (as float32) and "logits" [B, T, V] of the model on them.
// CKPT is a directory; the model goes to CKPT/model.h5 (model_io.h). Tokenizer files are copied
// into CKPT (CKPT/tokenizer/ for GPT-2, CKPT/tokenizer.bin for llama2c) so a checkpoint is
// self-contained; the recorded tokenizer spec points at the copy.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include <CLI/CLI.hpp>

#include "common/check.h"
#include "common/dist.h"
#include "common/llama2c.h"
#include "common/model_io.h"
#include "common/safetensors.h"
#include "common/tokenizer.h"

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
std::string adopt_tokenizer(const std::string& spec, const std::string& ckpt) {
  if (spec == "byte") return spec;
  if (fs::is_directory(spec)) {
    const fs::path dst = fs::path(ckpt) / "tokenizer";
    fs::create_directories(dst);
    for (const char* f : {"vocab.json", "merges.txt"}) {
      RLHF_CHECK(fs::exists(fs::path(spec) / f), "tokenizer folder '{}' has no {}", spec, f);
      fs::copy_file(fs::path(spec) / f, dst / f, fs::copy_options::overwrite_existing);
    }
    return fs::absolute(dst).string();
  }
  RLHF_CHECK(fs::is_regular_file(spec), "tokenizer '{}' not found (expected 'byte', a folder with "
             "vocab.json + merges.txt, or a llama2.c tokenizer file)", spec);
  const fs::path dst = fs::path(ckpt) / "tokenizer.bin";
  fs::copy_file(spec, dst, fs::copy_options::overwrite_existing);
  return fs::absolute(dst).string();
}

void write_checkpoint(ModelFile& f, const std::string& ckpt, const std::string& tok_spec) {
  fs::create_directories(ckpt);
  auto tok = load_tokenizer(adopt_tokenizer(tok_spec, ckpt));
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
  std::string spec = tok_opt;
  if (spec.empty()) {
    RLHF_CHECK(fs::exists(d / "vocab.json") && fs::exists(d / "merges.txt"),
               "'{}' has no vocab.json + merges.txt; pass --tokenizer SPEC", in);
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
  if (f.tok.identity.rfind("gpt2:", 0) == 0 && fs::is_directory(f.tok.spec))
    for (const char* n : {"vocab.json", "merges.txt"})
      fs::copy_file(fs::path(f.tok.spec) / n, fs::path(out) / n, fs::copy_options::overwrite_existing);
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
  torch::Device dev(device);
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

}  // namespace
}  // namespace rlhf

int main(int argc, char** argv) {
  rlhf::DistRuntime rt(&argc, &argv);
  return rlhf::run_main([&] {
    CLI::App app{"rlhf_convert: import/export models (Hugging Face, llama2.c) to/from model.h5"};
    app.require_subcommand(1);
    std::string in, out, tok, model, family, cfg_json, kind = "causal_lm";
    uint64_t seed = 0;
    int rc = 0;
    auto* a = app.add_subcommand("from-hf", "Hugging Face folder (safetensors) -> CKPT/model.h5");
    a->add_option("--in", in, "HF model folder (config.json, model.safetensors)")->required();
    a->add_option("--out", out, "checkpoint directory to create")->required();
    a->add_option("--tokenizer", tok, "tokenizer spec when the folder has no vocab.json/merges.txt");
    a->callback([&] { rc = rlhf::from_hf(in, out, tok); });
    auto* b = app.add_subcommand("to-hf", "CKPT -> Hugging Face folder (model.safetensors, config.json)");
    b->add_option("--in", in, "checkpoint (dir, run dir or model.h5)")->required();
    b->add_option("--out", out, "output folder")->required();
    b->callback([&] { rc = rlhf::to_hf(in, out); });
    auto* c = app.add_subcommand("from-llama2c", "llama2.c legacy .bin + tokenizer.bin -> CKPT/model.h5");
    c->add_option("--model", model, "llama2.c model file")->required();
    c->add_option("--tokenizer", tok, "llama2.c tokenizer file")->required();
    c->add_option("--out", out, "checkpoint directory to create")->required();
    c->callback([&] { rc = rlhf::from_llama2c(model, tok, out); });
    auto* d = app.add_subcommand("init", "freshly initialised model -> CKPT/model.h5");
    d->add_option("--family", family, "gpt2 | llama")->required();
    d->add_option("--tokenizer", tok, "tokenizer spec (byte, GPT-2 folder, llama2c file)")->required();
    d->add_option("--out", out, "checkpoint directory to create")->required();
    d->add_option("--config-json", cfg_json, "ModelConfig fields as JSON, or @file.json");
    d->add_option("--seed", seed, "torch::manual_seed before initialisation")->capture_default_str();
    d->add_option("--kind", kind, "causal_lm | scalar")->capture_default_str();
    d->callback([&] { rc = rlhf::init_model(family, cfg_json, tok, seed, kind, out); });
    std::string device = "cpu";
    int64_t batch = 3, len = 16;
    auto* e = app.add_subcommand("logits", "parity aid: a model's logits on seeded random tokens");
    e->add_option("--in", in, "causal_lm checkpoint")->required();
    e->add_option("--out", out, "output .safetensors (tokens, mask, logits)")->required();
    e->add_option("--seed", seed, "token seed")->capture_default_str();
    e->add_option("--batch", batch, "rows (odd rows are left-padded)")->capture_default_str();
    e->add_option("--len", len, "tokens per row")->capture_default_str();
    e->add_option("--device", device, "cpu | cuda | cuda:N")->capture_default_str();
    e->callback([&] { rc = rlhf::dump_logits(in, out, seed, batch, len, device); });
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e);
    }
    return rc;
  });
}
