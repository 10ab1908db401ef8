// hf_config.h — Hugging Face config.json <-> ModelConfig.
//
// config_from_hf: model_type gpt2 | llama | mistral | qwen2 | qwen3 (others -> error naming it).
// Strict: every key is either mapped to a ModelConfig field, checked to hold the one value we
// implement (e.g. pretraining_tp 1, attention_dropout 0, use_sliding_window false, hidden_act
// silu), or on a list of keys that do not change the weights' meaning (torch_dtype, bos/eos ids,
// use_cache, initializer_range, ...). Anything else is an rlhf::Error naming `where` and the key.
// RoPE comes from rope_theta + rope_scaling (transformers 4 files) or rope_parameters
// (transformers 5); types default | linear | llama3 (the llama3 keys factor, low_freq_factor,
// high_freq_factor, original_max_position_embeddings are required). Missing optional keys take
// the family's transformers defaults (e.g. qwen3 head_dim 128, llama tie_word_embeddings false).
// mistral sliding_window must be null or >= max_position_embeddings (the context we run).
//
// config_to_hf: the inverse (config_from_hf(config_to_hf(c)) == c up to dropout), in the
// transformers-4 key layout that transformers 5 also reads; `architectures` is the family's
// *ForCausalLM, or *ForSequenceClassification with num_labels 1 (id2label/label2id) and
// pad_token_id when seq_cls (the reward model / critic export).
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "common/model/model.h"

namespace rlhf {

ModelConfig config_from_hf(const nlohmann::json& config, const std::string& where = "config.json");

// Whether config.json describes a *ForSequenceClassification (architectures[0]); such a model
// must have one label (id2label / num_labels), else an error naming `where`.
bool hf_is_sequence_classifier(const nlohmann::json& config, const std::string& where);

struct HfConfigIds {
  int64_t bos = -1, eos = -1, pad = -1;  // written when >= 0 (pad: always for seq_cls)
};
nlohmann::json config_to_hf(const ModelConfig& cfg, const HfConfigIds& ids = {},
                            bool seq_cls = false);

}  // namespace rlhf
