// hf_folder.h — a Hugging Face model folder <-> ModelFile: config.json and the safetensors
// weights (tokenizer files are the caller's business).
//
// Reading: model.safetensors, else model.safetensors.index.json whose "weight_map" names a shard
// file (in the same folder) per tensor. Every shard named must exist, hold the tensors mapped to
// it, and no tensor may appear twice; errors name the index, the shard and the tensor. Stored
// F32/F16/BF16/F64 tensors all arrive as float32 (the native model file's dtype).
// Writing: config.json (config_to_hf) and the weights in `dtype` (float32 or bfloat16): one
// model.safetensors, or, when max_shard_bytes > 0 and the tensors exceed it, shards
// model-0000i-of-0000n.safetensors filled in name order (a shard exceeds the limit only when one
// tensor alone does) plus model.safetensors.index.json {"metadata": {"total_size"}, "weight_map"}.
// A causal_lm file exports as *ForCausalLM; a scalar file (reward model / critic) as
// *ForSequenceClassification: trunk + score.weight [1, d_model], num_labels 1, pad_token_id =
// the tokenizer's pad (else eos). HF's score has no bias and scores the last non-pad token: a
// non-zero score.bias is an error unless drop_score_bias, which exports without it (HF's score =
// ours - bias, a constant shift; the value is recorded as config.json "rlhf_score_bias").
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include <torch/torch.h>

#include "common/io/model_file.h"

namespace rlhf {

struct HfWeights {
  std::map<std::string, torch::Tensor> tensors;  // HF names, float32 CPU
  std::string where;                             // the file they came from (for messages)
};
HfWeights read_hf_weights(const std::string& dir);

// config.json + weights -> a ModelFile (native names, float32): kind "scalar" when config.json's
// architectures name a *ForSequenceClassification (one label; score.bias = config.json's
// rlhf_score_bias when present, else 0), else
// "causal_lm". Errors name the file.
ModelFile import_hf_folder(const std::string& dir);

struct HfExportOptions {
  torch::ScalarType dtype = torch::kFloat;  // kFloat | kBFloat16
  int64_t max_shard_bytes = 0;              // 0: one file
  bool drop_score_bias = false;
};
void export_hf_folder(const ModelFile& f, const std::string& out, const HfExportOptions& opt = {});

}  // namespace rlhf
