// lora.h — low-rank adapters on the trunk's projections (Hu et al. 2021, "LoRA: Low-Rank
// Adaptation of Large Language Models", arXiv:2106.09685).
//
// For a target projection y = W x + b (W [out, in]) the adapted layer computes
//     y = W x + b + s · B (A (dropout(x))),   A [r, in], B [out, r], s = alpha / r
// A starts kaiming-uniform (bound 1/sqrt(in), as PyTorch's Linear), B starts at zero, so a fresh
// adapter leaves every output unchanged. Only A and B train (plus the RM / critic score head); the
// base weights are frozen, so gradients and AdamW state exist for the adapters only. Merging folds
// the adapter into the weight: W' = W + s · B A.
//
// Naming follows PEFT without its "base_model.model." prefix: the adapters of
// "model.layers.0.self_attn.q_proj" are "model.layers.0.self_attn.q_proj.lora_A.weight" and
// "...q_proj.lora_B.weight" (children of the projection, so base names never change).
//
// Targets (model.lora.targets, comma-separated): Llama-architecture families q, k, v, o, gate, up,
// down; gpt2 c_attn (fused q/k/v), c_proj (attention and MLP output projections), c_fc; "all" =
// every projection of the family. A name the family does not have is an error naming the key.
//
// A LoRA model file (model.h5 with a "lora" attribute, model_file.h) stores the trained tensors
// only (adapters, score head) and names its base model file: `base` (absolute path) with a
// `base_fingerprint` that must match the base's tensors when it is read back.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>


namespace rlhf {

enum class Family;      // model.h
struct ModelConfig;     // model.h
class TransformerImpl;  // model.h

enum class LoraTarget { Q, K, V, O, Gate, Up, Down, CAttn, CProj, CFc };

struct LoraOptions {
  int64_t rank = 0;       // 0 = off
  double alpha = 16.0;    // scale s = alpha / rank
  double dropout = 0.0;   // on the adapter's input, training mode only
  std::string targets = "all";
  bool enabled() const { return rank > 0; }
  double scale() const { return alpha / static_cast<double>(rank); }
};

// The projections `text` names for family f (sorted, unique); throws rlhf::Error naming
// model.lora.targets and the family's projection names on an unknown or foreign name.
std::vector<LoraTarget> parse_lora_targets(const std::string& text, Family f);
std::string lora_target_name(LoraTarget t);
// Adapter parameters attach_lora adds to a model of `cfg` with `opt` (rank x (in + out) per
// adapted projection per layer), counted from the shapes (the memory estimator).
int64_t lora_parameter_count(const ModelConfig& cfg, const LoraOptions& opt);

// The "lora" attribute of a LoRA model file.
struct LoraInfo {
  LoraOptions opt;              // targets as the resolved comma list
  std::string base;             // absolute path of the base model.h5
  std::string base_fingerprint; // base_fingerprint() of the base's tensors
  nlohmann::json to_json() const;
  static LoraInfo from_json(const nlohmann::json&, const std::string& file);  // throws naming file
};

// What the trunk holds while adapters are attached (shared with every adapted projection).
struct LoraState {
  LoraInfo info;
  bool enabled = true;  // AdaptersOff
};

// A cheap content fingerprint of named tensors (names, shapes and each tensor's first and last 64
// values, zlib's CRC-32): tells a base model file apart from another without hashing gigabytes.
std::string base_fingerprint(const std::map<std::string, torch::Tensor>& tensors);

bool is_lora_name(const std::string& param_name);  // ".lora_A." or ".lora_B." in it
// Whether a parameter of a LoRA model is its own rather than the shared base's: an adapter, a
// trained parameter, or a score head (score.*). A LoRA model file stores exactly these; the rest
// is the base (read from the base file; ppo.frozen_dtype may hold it in bf16).
bool lora_owns(const std::string& param_name, const torch::Tensor& param);

// Adds adapters to the trunk of `model` (a CausalLM or ScalarModel), freezes every non-adapter
// parameter except a ScalarModel's score head, and records `info` (base file and fingerprint) on
// the trunk for save_model_h5. Adapters are created on the parameters' device. Draws A from
// libtorch's default generator (seed it first). REQUIRES: no adapters yet.
void attach_lora(torch::nn::Module& model, const LoraInfo& info);
// The LoRA info of a model with adapters, nullptr for a plain model.
const LoraInfo* lora_info(torch::nn::Module& model);

// Disables the adapters of `model` for a scope (no-op for a plain model): the PPO reference policy
// is the actor's base, so one copy of the base weights serves both.
class AdaptersOff {
 public:
  explicit AdaptersOff(torch::nn::Module& model);
  ~AdaptersOff();
  AdaptersOff(const AdaptersOff&) = delete;
  AdaptersOff& operator=(const AdaptersOff&) = delete;

 private:
  TransformerImpl* trunk_ = nullptr;
  bool was_ = false;
};

// Tensors of a LoRA model file folded into plain weights: W += s · B A for every adapter pair;
// adapter tensors removed. `tensors` holds base and adapter tensors under their module names.
void merge_lora_tensors(std::map<std::string, torch::Tensor>& tensors, const LoraOptions& opt,
                        const std::string& file);

}  // namespace rlhf
