// rlhf_convert's commands (see convert.h); main.cpp only parses the command line.
#include "tools/convert/convert.h"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include <unistd.h>

#include "common/core/check.h"
#include "common/dist/dist.h"
#include "common/io/hf_folder.h"
#include "common/io/llama2c_import.h"
#include "common/io/model_file.h"
#include "common/io/safetensors.h"
#include "common/model/generate.h"
#include "common/model/model.h"
#include "common/core/fs.h"
#include "common/tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace rlhf {
namespace {


// Copies the tokenizer files into ckpt and returns the spec of the copy.
void write_checkpoint(ModelFile& f, const std::string& ckpt, const std::string& tok_spec, bool force) {
  RLHF_CHECK(force || !fs::exists(fs::path(ckpt) / "model.h5"),
             "{} already holds a model (model.h5): choose a new --out directory, or pass --force to "
             "replace the model (anything else in it, e.g. optimizer state, stays as it is)", ckpt);
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

int from_hf(const std::string& in, const std::string& out, const std::string& tok_opt, bool force) {
  const fs::path d(in);
  ModelFile f = import_hf_folder(in);
  std::string spec = tok_opt;  // default: the folder's own (tokenizer.json, tokenizer.model, vocab.json)
  if (spec.empty()) {
    RLHF_CHECK(fs::exists(d / "tokenizer.json") || fs::exists(d / "tokenizer.model") ||
                   (fs::exists(d / "vocab.json") && fs::exists(d / "merges.txt")),
               "'{}' has no tokenizer.json, tokenizer.model or vocab.json + merges.txt; pass "
               "--tokenizer SPEC", in);
    spec = fs::absolute(d).string();
  }
  write_checkpoint(f, out, spec, force);
  return 0;
}

// The chat template the model was trained with goes into the exported tokenizer_config.json
// (created when the tokenizer has none), so apply_chat_template renders what the model saw.
void write_chat_template(const std::string& out, const TokenizerInfo& tok) {
  const fs::path p = fs::path(out) / "tokenizer_config.json";
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (fs::exists(p)) {
    try {
      j = nlohmann::ordered_json::parse(read_file_bytes(p.string()));
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("{}: not valid JSON: {}", p.string(), e.what()));
    }
  }
  j["chat_template"] = tok.chat_template;
  write_file_atomic(p.string(), j.dump(2) + "\n");
}

int to_hf(const std::string& in, const std::string& out, const HfExportOptions& opt, bool force) {
  const std::string path = resolve_model_path(in);
  RLHF_CHECK(force || !fs::exists(fs::path(out) / "config.json"),
             "{} already holds a Hugging Face model (config.json): choose a new --out folder, or "
             "pass --force to replace its config and weights", out);
  ModelFile f = read_model_h5(path);
  // Written into a staging folder beside `out` and swapped in only when complete: a failed
  // export (full disk, a tokenizer that cannot be copied) leaves the previous export as it was.
  const fs::path dst = fs::absolute(out).lexically_normal();
  const fs::path stage = dst.parent_path() / (dst.filename().string() + ".rlhf-staging-" + std::to_string(::getpid()));
  fs::remove_all(stage);
  try {
    export_hf_folder(f, stage.string(), opt);
    if (f.tok.spec != "byte" && f.tok.identity.rfind("llama2c:", 0) != 0)
      copy_tokenizer(f.tok.spec, stage.string(), /*flat=*/true);  // llama2.c's .bin means nothing to HF
    if (!f.tok.chat_template.empty()) write_chat_template(stage.string(), f.tok);
    if (fs::is_directory(dst)) {
      // The user's other files stay; the replaced model's weights and shard index do not (a stale
      // index makes loaders read old shards).
      for (const auto& e : fs::directory_iterator(dst)) {
        const std::string n = e.path().filename().string();
        const bool weights = n == "model.safetensors.index.json" ||
                             (n.size() > 12 && n.compare(n.size() - 12, 12, ".safetensors") == 0);
        if (!weights && !fs::exists(stage / n)) fs::copy(e.path(), stage / n, fs::copy_options::recursive);
      }
      const fs::path old = dst.parent_path() / (dst.filename().string() + ".rlhf-old-" + std::to_string(::getpid()));
      fs::rename(dst, old);
      fs::rename(stage, dst);
      fs::remove_all(old);
    } else {
      fs::rename(stage, dst);
    }
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove_all(stage, ec);
    RLHF_CHECK(false, "to-hf --out {}: {} (the folder was left as it was)", out, e.what());
  }
  std::cerr << fmt::format("wrote {}: config.json and the weights of {} ({} {} tensors)\n", out,
                           path, f.tensors.size(), f.kind);
  return 0;
}

int merge_lora(const std::string& in, const std::string& out, bool force) {
  const std::string path = resolve_model_path(in);
  const nlohmann::json lora = read_model_header(path).lora;
  RLHF_CHECK(!lora.is_null(), "{}: not a LoRA model (no 'lora' attribute): nothing to merge", path);
  const fs::path dst = fs::path(out) / "model.h5";
  RLHF_CHECK(force || !fs::exists(dst),
             "{} already holds a model (model.h5): choose a new --out directory, or pass --force",
             out);
  RLHF_CHECK(fs::absolute(dst).lexically_normal() != fs::absolute(path).lexically_normal(),
             "--out {} would overwrite the LoRA model being merged", out);
  ModelFile f = read_model_h5(path);  // base + adapters, merged
  fs::create_directories(out);
  save_model_file(dst.string(), f);
  std::cerr << fmt::format("wrote {}: {} merged with its base {} (rank {}, alpha {}, targets {}), "
                           "{} tensors\n", dst.string(), path, lora.at("base").get<std::string>(),
                           lora.at("rank").get<int64_t>(), lora.at("alpha").get<double>(),
                           lora.at("targets").get<std::string>(), f.tensors.size());
  return 0;
}

int from_llama2c(const std::string& model, const std::string& tok, const std::string& out, bool force) {
  ModelFile f = import_llama2c(model);
  write_checkpoint(f, out, tok, force);
  return 0;
}

int init_model(const std::string& family, const std::string& cfg_json, const std::string& tok_spec,
               uint64_t seed, const std::string& kind, const std::string& out, bool force,
               bool header_only) {
  nlohmann::json j = nlohmann::json::object();
  if (!cfg_json.empty()) {
    try {
      j = cfg_json[0] == '@' ? read_json_file(cfg_json.substr(1)) : nlohmann::json::parse(cfg_json);
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
  RLHF_CHECK(kind == "causal_lm" || kind == "scalar", "--kind must be causal_lm or scalar, got '{}'", kind);
  if (header_only) {  // config and tokenizer only: --dry-run plans for models too big to build here
    f.extra["header_only"] = true;
    write_checkpoint(f, out, tok_spec, force);
    return 0;
  }
  torch::manual_seed(seed);
  std::shared_ptr<torch::nn::Module> m;
  if (kind == "causal_lm") m = CausalLM(f.cfg).ptr();
  else if (kind == "scalar") m = ScalarModel(f.cfg).ptr();
  else throw Error(fmt::format("--kind must be causal_lm or scalar, got '{}'", kind));
  for (auto& p : m->named_parameters()) f.tensors[p.key()] = p.value().detach();
  write_checkpoint(f, out, tok_spec, force);
  return 0;
}

namespace {
// Seeded random tokens [B, T] in [0, V) with odd rows left-padded (pad positions hold token 0);
// `avoid` >= 0 is replaced by (avoid + 1) % V in real positions (HF's sequence classifier finds
// the last token by comparing with pad_token_id).
std::pair<torch::Tensor, torch::Tensor> random_batch(uint64_t seed, int64_t batch, int64_t len,
                                                     int64_t vocab, int64_t avoid) {
  torch::manual_seed(seed);
  auto tokens = torch::randint(0, vocab, {batch, len}, torch::kLong);  // [B, T]
  if (avoid >= 0) tokens.masked_fill_(tokens == avoid, (avoid + 1) % vocab);
  auto mask = torch::ones({batch, len}, torch::kBool);                 // [B, T]
  for (int64_t b = 1; b < batch; b += 2) {
    const int64_t pad = std::min<int64_t>(len - 1, 1 + b);
    mask[b].narrow(0, 0, pad).fill_(false);
    tokens[b].narrow(0, 0, pad).fill_(0);
  }
  return {tokens, mask};
}
}  // namespace

int dump_logits(const std::string& in, const std::string& out, uint64_t seed, int64_t batch,
                int64_t len, const std::string& device) {
  const std::string path = resolve_model_path(in);
  ModelFile f = read_model_h5(path);
  RLHF_CHECK(f.kind == "causal_lm" || f.kind == "scalar",
             "{}: logits needs a causal_lm or scalar checkpoint", path);
  RLHF_CHECK(batch > 0 && len > 0 && len <= f.cfg.max_seq_len,
             "logits: need batch > 0 and 0 < len <= max_seq_len ({})", f.cfg.max_seq_len);
  const torch::Device dev = parse_device(device, world());
  const bool scalar = f.kind == "scalar";
  auto [tokens, mask] = random_batch(seed, batch, len, f.cfg.vocab_size,
                                     scalar ? (f.tok.pad >= 0 ? f.tok.pad : f.tok.eos) : -1);
  torch::NoGradGuard ng;
  std::map<std::string, torch::Tensor> res = {{"tokens", tokens.to(torch::kFloat)},
                                              {"mask", mask.to(torch::kFloat)}};
  if (scalar) {
    ScalarModel m(f.cfg);
    load_parameters(*m, f);
    m->to(dev);
    m->eval();
    res["scores"] = m->score_last(tokens.to(dev), mask.to(dev)).to(torch::kCPU);  // [B]
    res["score_bias"] = f.tensors.at("score.bias").to(torch::kFloat);               // [1]
  } else {
    CausalLM m(f.cfg);
    load_parameters(*m, f);
    m->to(dev);
    m->eval();
    res["logits"] = m->forward(tokens.to(dev), positions_from_mask(mask).to(dev), mask.to(dev))
                        .to(torch::kCPU);  // [B, T, V]
  }
  write_safetensors(out, res);
  std::cerr << fmt::format("wrote {}: {} [{}, {}] of {} on {}\n", out,
                           scalar ? "scores" : "logits", batch, len, path, dev.str());
  return 0;
}

int dump_greedy(const std::string& in, const std::string& out, uint64_t seed, int64_t batch,
                int64_t len, int64_t new_tokens, const std::string& device) {
  const std::string path = resolve_model_path(in);
  ModelFile f = read_model_h5(path);
  RLHF_CHECK(f.kind == "causal_lm", "{}: greedy needs a causal_lm checkpoint", path);
  RLHF_CHECK(batch > 0 && len > 0 && new_tokens > 0 && len + new_tokens <= f.cfg.max_seq_len,
             "greedy: need batch, len, new > 0 and len + new <= max_seq_len ({})",
             f.cfg.max_seq_len);
  const torch::Device dev = parse_device(device, world());
  auto [prompts, mask] = random_batch(seed, batch, len, f.cfg.vocab_size, -1);
  CausalLM m(f.cfg);
  load_parameters(*m, f);
  m->to(dev);
  SamplingConfig sc;
  sc.max_new_tokens = new_tokens;
  sc.temperature = 0.0;
  sc.stop_at_eos = false;
  auto g = generate(m, prompts, mask, sc, seed);
  write_safetensors(out, {{"tokens", g.tokens.to(torch::kCPU, torch::kFloat)},
                          {"prompt_mask", mask.to(torch::kFloat)}});
  std::cerr << fmt::format("wrote {}: {} greedy tokens for {} prompts of {} on {}\n", out,
                           g.new_tokens, batch, path, dev.str());
  return 0;
}

}  // namespace rlhf

