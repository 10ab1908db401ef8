// model_file.h — model.h5: the native model file (one per trained model inside a checkpoint).
//
// Format (format_version 1): one float32 dataset per named parameter, named exactly as
// named_parameters() (Hugging Face names, e.g. "transformer.h.0.attn.c_attn.weight"); root
// attributes: format_version (int), kind ("causal_lm" | "scalar"), model_config (JSON of
// ModelConfig), tokenizer (JSON of TokenizerInfo; its files are copied into tokenizer/ beside
// model.h5 and the spec is stored relative to that folder, so a checkpoint can be moved; read
// back as an absolute path), extra (JSON object, e.g. the RM's fitted bias).
// Contract: only rank 0 writes (save_model_h5 does not coordinate ranks); any rank may read. Every
// failure throws rlhf::Error naming the file and, where relevant, the tensor and both shapes.
#pragma once
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "common/model/model.h"
#include "common/tokenizer/tokenizer.h"

namespace rlhf {

constexpr int64_t kModelFormatVersion = 1;

struct TokenizerInfo {
  std::string spec, identity;  // Tokenizer::spec() / identity()
  int64_t bos = -1, eos = -1, pad = -1, vocab_size = 0;
  std::vector<int64_t> stops;  // Tokenizer::stop_ids() other than eos (JSON key "stops", optional)
  // The chat template the model was trained with (from its chat datasets; "" = none, plain
  // rows) and its end-of-turn id (also in stops). JSON keys optional (older files: none).
  std::string chat_template, chat_template_name;
  int64_t end_of_turn = -1;
  nlohmann::json to_json() const;
  static TokenizerInfo from_json(const nlohmann::json&);  // throws naming a missing/bad key
  static TokenizerInfo of(const Tokenizer&);
};

struct ModelFile {
  ModelConfig cfg;
  TokenizerInfo tok;
  std::string kind;  // "causal_lm" | "scalar"
  std::map<std::string, torch::Tensor> tensors;  // name -> float32 CPU tensor
  nlohmann::json extra;
  // LoRA (lora.h): a file with a "lora" attribute holds only its trained tensors (adapters, score
  // head) and names its base model file. read_model_h5 returns it merged (plain weights, lora
  // null) or, with LoraLoad::Separate, base + adapter tensors unmerged and lora = the attribute
  // (what a model with the same adapters attached loads: resume).
  nlohmann::json lora;
  std::string path;  // where it was read from (for error messages); empty when built in memory
};

// model.h5: one dataset per named parameter (fp32), root attributes: format_version, kind,
// model_config (JSON), tokenizer (JSON), extra (JSON, e.g. the RM's fitted bias info)
void save_model_h5(const std::string& path, torch::nn::Module& m, const ModelConfig&,
                   const TokenizerInfo&, const std::string& kind, const nlohmann::json& extra = {});
// A model with LoRA adapters (lora_info(m) set) is saved as a LoRA file: only the adapters and
// the parameters that require grad, a scalar model's score head, plus the "lora" attribute.
// Same, from a ModelFile (converters). Tensors are converted to float32; f.lora (when not null)
// is written as the "lora" attribute.
void save_model_file(const std::string& path, const ModelFile& f);
enum class LoraLoad { Merge, Separate };
// A LoRA file's base is read (recursively: a base may itself be a LoRA file, up to 8 deep),
// checked against the recorded fingerprint and model config, and its tensors completed by the
// file's (a scalar model's base keeps no lm_head). Errors name the file and its base.
ModelFile read_model_h5(const std::string& path, LoraLoad mode = LoraLoad::Merge);
// The attributes only (config, tokenizer, kind, extra): no tensors are read (--dry-run).
ModelFile read_model_header(const std::string& path);

// Copy tensors into m's parameters by name. Every parameter must be present with the right shape,
// else rlhf::Error naming the file and tensor. allow_missing: names that may be absent (e.g.
// "score.weight","score.bias" when initialising an RM from an SFT LM). Names present in the file
// but not in the module are ignored only if ignore_unexpected (e.g. "lm_head.weight" when loading
// an LM into a ScalarModel).
void load_parameters(torch::nn::Module& m, const ModelFile& f,
                     const std::vector<std::string>& allow_missing = {},
                     bool ignore_unexpected = false);

// A checkpoint argument may be a checkpoint directory (containing model.h5) or a run directory
// (resolve <dir>/checkpoints/latest -> that dir's model.h5) or the model.h5 path itself.
std::string resolve_model_path(const std::string& ckpt);

// A checkpoint (run directory or model file) of kind causal_lm / scalar, loaded onto dev in eval
// mode; the file (tokenizer, extra) into *file_out when given. Throws naming ckpt for another kind.
CausalLM load_causal_lm(const std::string& ckpt, const torch::Device& dev, ModelFile* file_out = nullptr);
ScalarModel load_scalar_model(const std::string& ckpt, const torch::Device& dev, ModelFile* file_out = nullptr);

}  // namespace rlhf
