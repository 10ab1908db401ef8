// safetensors.h — the safetensors file format and the Hugging Face <-> native mapping.
//
// File format: 8-byte little-endian header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the
// raw little-endian data; offsets are relative to the end of the header.
// read_safetensors: F32, F16, BF16, F64 -> float32 CPU tensors. Errors (rlhf::Error) name the file
// and tensor: bad header length, bad JSON, unknown dtype, size/shape mismatch, out-of-range or
// overlapping offsets, truncated data.
// write_safetensors: every tensor converted to `dtype` (F32 default, BF16, F16), tensors in name
// order, header padded with spaces to a multiple of 8 bytes.
//
// HF mapping (all families): parameter names are already HF's (see model.h). gpt2: HF's Conv1D
// weights (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) are [in, out] and are transposed to our
// Linear [out, in]; a file may omit the "transformer." prefix (GPT2Model checkpoints, e.g. the
// original "gpt2" upload); a tied lm_head.weight is dropped; non-parameter buffers (attn.bias,
// attn.masked_bias, rotary_emb.inv_freq) are ignored. Anything else unknown -> error.
#pragma once
#include <map>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "common/io/hf_config.h"
#include "common/model/model.h"

namespace rlhf {

struct SafetensorsData {
  std::map<std::string, torch::Tensor> tensors;  // float32, CPU
  std::map<std::string, std::string> metadata;
};

SafetensorsData read_safetensors(const std::string& path);
void write_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {},
                       torch::ScalarType dtype = torch::kFloat);

// HF-named tensors -> native names/layout (checks every parameter is present with the right shape,
// naming `where` and the tensor; scalar: a *ForSequenceClassification's trunk + score.weight
// [1, C], score.bias added as zero). native -> HF: the exact inverse (gpt2 with "transformer." prefix);
// scalar = a ScalarModel (trunk + score.weight [1, C]; its score.bias is left out: HF's
// *ForSequenceClassification score has no bias, the caller decides what to do with it).
std::map<std::string, torch::Tensor> tensors_from_hf(const ModelConfig& cfg,
                                                     const std::map<std::string, torch::Tensor>& hf,
                                                     const std::string& where,
                                                     bool scalar = false);
std::map<std::string, torch::Tensor> tensors_to_hf(const ModelConfig& cfg,
                                                   const std::map<std::string, torch::Tensor>& native,
                                                   bool scalar = false);

}  // namespace rlhf
