// safetensors.h — the safetensors file format and the Hugging Face <-> native mapping.
//
// File format: 8-byte little-endian header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the
// raw little-endian data; offsets are relative to the end of the header.
// read_safetensors: F32, F16, BF16, F64 -> float32 CPU tensors. Errors (rlhf::Error) name the file
// and tensor: bad header length, bad JSON, unknown dtype, size/shape mismatch, out-of-range or
// overlapping offsets, truncated data.
// write_safetensors: float32 only (others are converted), tensors in name order, header padded
// with spaces to a multiple of 8 bytes.
//
// HF mapping (both families): parameter names are already HF's (see model.h). gpt2: HF's Conv1D
// weights (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) are [in, out] and are transposed to our
// Linear [out, in]; a file may omit the "transformer." prefix (GPT2Model checkpoints, e.g. the
// original "gpt2" upload); a tied lm_head.weight is dropped; non-parameter buffers (attn.bias,
// attn.masked_bias, rotary_emb.inv_freq) are ignored. Anything else unknown -> error.
#pragma once
#include <map>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "common/model/model.h"

namespace rlhf {

struct SafetensorsData {
  std::map<std::string, torch::Tensor> tensors;  // float32, CPU
  std::map<std::string, std::string> metadata;
};

SafetensorsData read_safetensors(const std::string& path);
void write_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// config.json <-> ModelConfig. from: model_type "gpt2" | "llama" (others -> error naming it);
// unsupported variants (rope_scaling, attention biases, other activations) -> error.
ModelConfig config_from_hf(const nlohmann::json& config, const std::string& where = "config.json");
// Adds architectures/model_type; bos/eos ids when >= 0.
nlohmann::json config_to_hf(const ModelConfig& cfg, int64_t bos_id = -1, int64_t eos_id = -1);

// HF-named tensors -> native names/layout (checks every parameter is present with the right shape,
// naming `where` and the tensor). native -> HF: the exact inverse (gpt2 with "transformer." prefix).
std::map<std::string, torch::Tensor> tensors_from_hf(const ModelConfig& cfg,
                                                     const std::map<std::string, torch::Tensor>& hf,
                                                     const std::string& where);
std::map<std::string, torch::Tensor> tensors_to_hf(const ModelConfig& cfg,
                                                   const std::map<std::string, torch::Tensor>& native);

}  // namespace rlhf
