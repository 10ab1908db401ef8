// model.h — the decoder-only transformer shared by every stage (SFT policy, reward model, critic).
//
// Contract:
// - Families with Hugging Face parameter names, so safetensors import/export is a rename:
//     gpt2 : learned positions, LayerNorm, GELU (tanh approximation, HF "gelu_new"), biases,
//            fused c_attn, tied embeddings by default. n_kv_head must equal n_head.
//     llama, mistral, qwen2, qwen3 (the "Llama architecture", uses_rope()): RMSNorm, RoPE (HF
//            rotate-half layout, rope_theta, optional rope_scaling linear | llama3), SwiGLU MLP,
//            grouped-query attention via n_kv_head (n_head % n_kv_head == 0), optional tie,
//            head_dim = head_dim_override or d_model / n_head (q/k/v [n*head_dim], o_proj
//            [d_model, n_head*head_dim]). Feature flags, each pinned by validate() to what the
//            family's HF class can hold: qkv_bias / o_bias (llama: attention_bias sets both;
//            qwen2: q/k/v only, always; qwen3: both or neither; mistral: none), mlp_bias (llama
//            only), qk_norm (qwen3 only, always: RMSNorm over head_dim on q and k before RoPE).
//            sliding_window (mistral metadata): 0 = none, else >= max_seq_len, i.e. no effect.
// - Shapes: tokens/positions [B, T] int64; attention_mask [B, Tk] bool (true = real token) with
//   Tk = cache_pos + T; hidden [B, T, d_model]; logits [B, T, V] always float32.
// - Left padding: pad tokens get position 0 (positions_from_mask) and are never attended to as
//   keys. A pad *query* row (no real key visible) attends to every key instead of producing NaN;
//   its output is garbage by design and must be masked out by the caller.
// - Attention goes through compat::attention: with no attention_mask and no cache, plain causal (SDPA's
//   flash path on libtorch 2.x); otherwise one [B, 1, T, Tk] "may attend" mask built once per
//   forward (padding + causal, bottom-right aligned). GQA decode steps (T == 1) read the cache in
//   place; longer GQA passes repeat k/v per query head (as HF's repeat_kv).
// - KV cache: forward(..., cache, cache_pos) writes the new keys/values at [cache_pos, cache_pos+T)
//   and attends over [0, cache_pos + T). No host synchronisation happens inside forward.
// - Dropout (cfg.dropout), active only in train() mode: gpt2 on embeddings, attention
//   probabilities and residual branches; llama on attention probabilities and residual branches.
// - activation_checkpointing: each block runs without saving activations in forward and is
//   recomputed in backward (reentrant, via a custom autograd function). Dropout RNG state is
//   replayed on recompute for the CPU generator and the current CUDA device's default generator.
// - Initialisation (constructor): normal(0, 0.02) weights, zero biases, unit norms, residual output
//   projections normal(0, 0.02 / sqrt(2 * n_layer)). Seed with torch::manual_seed beforehand.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "common/core/strings.h"
#include "common/data/batch.h"
#include "common/model/lora.h"

namespace rlhf {

enum class Family { GPT2, Llama, Mistral, Qwen2, Qwen3 };
inline constexpr EnumNames<Family, 5> kFamilyNames{{{Family::GPT2, "gpt2"}, {Family::Llama, "llama"},
    {Family::Mistral, "mistral"}, {Family::Qwen2, "qwen2"}, {Family::Qwen3, "qwen3"}}};
std::string family_name(Family);          // "gpt2" | "llama" | "mistral" | "qwen2" | "qwen3"
Family parse_family(const std::string&);  // throws rlhf::Error on unknown
// Every family but gpt2 is the Llama architecture (RoPE, RMSNorm, SwiGLU, "model." trunk).
inline bool uses_rope(Family f) { return f != Family::GPT2; }

// RoPE frequency scaling, as Hugging Face's rope_scaling / rope_parameters:
//   none  : inv_freq[i] = 1 / theta^(2i/D)
//   linear: inv_freq / factor (positions / factor)
//   llama3: Llama 3.1's per-frequency rule (transformers' _compute_llama3_parameters): wavelengths
//           above original_max_position_embeddings / low_freq_factor divided by factor, below
//           original / high_freq_factor kept, smooth interpolation between.
struct RopeScaling {
  std::string type = "none";  // "none" | "linear" | "llama3"
  double factor = 1.0, low_freq_factor = 1.0, high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
  bool operator==(const RopeScaling& o) const;
  nlohmann::json to_json() const;  // null for "none"
};

struct ModelConfig {
  Family family = Family::GPT2;
  int64_t vocab_size = 259, n_layer = 2, n_head = 4, n_kv_head = 4, d_model = 128, d_ff = 512,
          max_seq_len = 256;
  double norm_eps = 1e-5, rope_theta = 10000.0, dropout = 0.0;
  bool tie_embeddings = true;
  bool activation_checkpointing = false;  // recompute each block in backward
  int64_t head_dim_override = 0;          // 0: d_model / n_head
  bool qkv_bias = false, o_bias = false, mlp_bias = false, qk_norm = false;
  RopeScaling rope_scaling;
  int64_t sliding_window = 0;  // 0 = none; else >= max_seq_len (mistral metadata, no effect)
  int64_t head_dim() const { return head_dim_override > 0 ? head_dim_override : d_model / n_head; }
  // Parameters of CausalLM(*this) (scalar_head: of ScalarModel), counted from the shapes without
  // building the model (tested against the modules' numel for every family).
  int64_t parameter_count(bool scalar_head = false) const;
  void validate() const;  // throws rlhf::Error naming the bad field
  // The family's fixed flags (qwen2: qkv_bias; qwen3: qk_norm), all others off.
  static ModelConfig defaults_for(Family);
  // Keys are the field names above; family as its name; rope_scaling null or an object with
  // type/factor/low_freq_factor/high_freq_factor/original_max_position_embeddings. from_json:
  // starts from defaults_for(family), missing keys keep those defaults, unknown keys and wrong
  // types throw naming the key; the result is validated.
  nlohmann::json to_json() const;
  static ModelConfig from_json(const nlohmann::json&);
};

// Static KV cache, preallocated: per layer k, v: [B, n_kv_head, capacity, head_dim].
struct KVCache {
  std::vector<torch::Tensor> k, v;
  int64_t capacity = 0;
  static KVCache allocate(const ModelConfig&, int64_t batch, int64_t capacity,
                          torch::TensorOptions);
  // The dtype a cache is stored in: the autocast dtype on CUDA when autocast is on (keys and
  // values come out of autocast matmuls in it), else the parameters' dtype.
  static torch::ScalarType storage_dtype(const torch::Device& dev, torch::ScalarType param_dtype);
};

// Paged KV cache (the rollout engine's, rollout_engine.h): per layer k, v:
// [num_blocks, block_size, n_kv_head, head_dim]. A sequence's keys live in the blocks its block
// table lists, in order (logical position i -> block table[i / block_size], offset
// i % block_size); blocks are handed out and freed by the engine. Block 0 is never handed out:
// padding entries of a block table point at it and are masked.
struct PagedKV {
  std::vector<torch::Tensor> k, v;
  int64_t block_size = 16;
  int64_t num_blocks() const { return k.empty() ? 0 : k[0].size(0); }
  int64_t bytes() const;  // all layers, keys and values
  // Uninitialised blocks (zero_block before use).
  static PagedKV allocate(const ModelConfig&, int64_t num_blocks, int64_t block_size,
                          torch::TensorOptions);
  void zero_block(int64_t b);
  // Copies block `from` into block `to` on every layer (copy-on-write of a shared block).
  void copy_block(int64_t from, int64_t to);
};

// One paged decode step of R rows (TransformerImpl::decode_paged), all on the model's device.
struct PagedStep {
  torch::Tensor write_slot;      // [R] int64: block * block_size + offset of the token fed
  torch::Tensor block_table;     // [R, MB] int64: each row's blocks in order, padded with 0
  torch::Tensor attention_mask;  // [R, MB * block_size] bool: the slots a row attends (its
                                 // filled length, the fed token included)
};

// RoPE inverse frequencies [head_dim / 2] float32 (CPU) with cfg.rope_scaling applied, computed
// in the same float32 operation order as transformers' rope init functions.
torch::Tensor rope_inv_freq(const ModelConfig& cfg);

// positions from a left-padded mask: cumsum(mask) - 1, clamped at 0. mask [B,T] bool -> [B,T] int64
torch::Tensor positions_from_mask(const torch::Tensor& mask);
// index of the last true entry per row; mask [B,T] bool -> [B] int64 (0 for an all-false row)
torch::Tensor last_true_index(const torch::Tensor& mask);

namespace detail {
struct AttnCtx;  // per-forward attention state (masks, rotary tables, cache), model.cpp
}

// Called by the trunk around each transformer block, for parameters kept elsewhere between uses
// (ZeRO stage 3, train/zero.h: a block's sharded parameters are gathered just before it runs and
// freed after). Unset (the default), blocks use their parameters as they are. The calls:
// before_trunk at the start of every trunk pass (grad: grad mode is on; checkpointed: the blocks
// run under activation checkpointing, so their backward recomputes them);
// before_block(l) before block l's forward and before its recompute in backward (activation
// checkpointing); after_block_forward(l) after its forward; after_block_backward(l) once block
// l's parameter gradients of this backward pass through the block are complete (a checkpointed
// block: after its recompute's backward; a plain block: when the gradient reaches its input).
// Backward hooks fire in the autograd engine's order, which is the same on every rank that runs
// the same passes in the same order (ZeRO's collectives in them rely on that).
class BlockParamHooks {
 public:
  virtual ~BlockParamHooks() = default;
  virtual void before_trunk(bool grad, bool checkpointed) = 0;
  virtual void before_block(int64_t layer) = 0;
  virtual void after_block_forward(int64_t layer) = 0;
  virtual void after_block_backward(int64_t layer) = 0;
};

class TransformerImpl : public torch::nn::Module {  // the trunk (embeddings, blocks, final norm)
 public:
  explicit TransformerImpl(const ModelConfig& cfg);
  // The blocks in order (their parameters are the block's); hooks: see BlockParamHooks (nullptr
  // = none). REQUIRES: hooks outlive the trunk's use or are unset first.
  const std::vector<std::shared_ptr<torch::nn::Module>>& block_modules() const { return block_ptrs_; }
  void set_block_hooks(BlockParamHooks* hooks);
  bool has_block_hooks() const { return hooks_ != nullptr; }
  // tokens [B,T] int64, positions [B,T] int64, attention_mask [B, Tk] bool where Tk = cache_pos + T
  // (true = real token; undefined tensor = no padding). Causal within the sequence.
  // cache == nullptr: plain full pass. Otherwise new keys/values are written into the cache at
  // [cache_pos, cache_pos + T) and attention covers cache[0, cache_pos + T).
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& positions,
                        const torch::Tensor& attention_mask, KVCache* cache = nullptr,
                        int64_t cache_pos = 0);  // -> [B, T, d_model]
  // A decode step whose shapes and host arguments do not change from step to step (so it can be
  // captured once in a CUDA graph and replayed): tokens/positions [B,1] int64; attention_mask
  // [B, L] bool with 1 <= L <= capacity, true = attend (the caller masks the slots not written
  // yet); cache_index [1] int64 on the device = the slot the new key/value goes to, which the
  // caller keeps < L (not checked: that would need a host sync). Attention reads cache slots
  // [0, L) only, so a caller can capture one graph per bucket of L. -> [B, 1, d_model]
  torch::Tensor decode_static(const torch::Tensor& tokens, const torch::Tensor& positions,
                              const torch::Tensor& attention_mask, KVCache& cache,
                              const torch::Tensor& cache_index);
  // Packed rows (padding-free training; batch.h PackedRows): tokens/positions [1, T] are the
  // rows' real tokens back to back, positions restarting in each row. Every layer runs on the T
  // tokens; attention lays q/k/v out per row ([rows, longest], causal, keys inside the row) and
  // back, so each row sees exactly what it sees in a padded batch. -> [1, T, d_model]. Works
  // with activation checkpointing, dropout, LoRA and block hooks as forward() does.
  torch::Tensor forward_packed(const torch::Tensor& tokens, const torch::Tensor& positions,
                               const PackedRows& packed);
  // A decode step over a paged cache: tokens/positions [R, 1] int64; each row's new key/value is
  // written at step.write_slot and its attention reads the blocks of step.block_table under
  // step.attention_mask. -> [R, 1, d_model]
  torch::Tensor decode_paged(const torch::Tensor& tokens, const torch::Tensor& positions,
                             PagedKV& kv, const PagedStep& step);
  torch::Tensor token_embedding_weight();        // [V, C], for tied heads
  // LoRA (lora.h; use attach_lora): adapters on the blocks' `targets`, created on `dev`.
  // REQUIRES: none attached yet.
  void add_lora(const LoraInfo& info, const std::vector<LoraTarget>& targets,
                const torch::Device& dev);
  LoraState* lora() { return lora_.get(); }  // nullptr without adapters
  ModelConfig cfg;

 private:
  torch::Tensor run_layers(const torch::Tensor& tokens, const torch::Tensor& positions,
                           detail::AttnCtx& c, bool checkpoint);
  // gpt2
  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::LayerNorm ln_f{nullptr};
  // llama architecture
  torch::nn::Embedding embed_tokens{nullptr};
  std::shared_ptr<torch::nn::Module> norm_;  // RMSNorm
  torch::Tensor inv_freq_;                   // [head_dim / 2] float32, moved to the input's device
  // blocks, registered as "h" (gpt2) or "layers" (llama)
  torch::nn::ModuleList blocks{nullptr};
  std::vector<std::shared_ptr<torch::nn::Module>> block_ptrs_;
  std::shared_ptr<LoraState> lora_;
  BlockParamHooks* hooks_ = nullptr;
};
TORCH_MODULE(Transformer);

class CausalLMImpl : public torch::nn::Module {
 public:
  explicit CausalLMImpl(const ModelConfig& cfg);
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& positions,
                        const torch::Tensor& attention_mask, KVCache* cache = nullptr,
                        int64_t cache_pos = 0);  // -> logits [B, T, V] (float32 under autocast too)
  // Logits from trunk hidden states [B, T, C] -> [B, T, V] float32 (e.g. only the last position).
  torch::Tensor logits_from_hidden(const torch::Tensor& hidden);
  // The LM head's weight [V, C]: lm_head.weight, or the token embedding when tied.
  torch::Tensor head_weight();
  ModelConfig cfg;
  Transformer trunk{nullptr};          // registered as trunk_name(family)
  torch::nn::Linear lm_head{nullptr};  // registered as "lm_head" only when not tied
};
TORCH_MODULE(CausalLM);

// Reward model / critic: trunk + Linear(d_model, 1) with bias, registered as "score".
class ScalarModelImpl : public torch::nn::Module {
 public:
  explicit ScalarModelImpl(const ModelConfig& cfg);
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& positions,
                        const torch::Tensor& attention_mask);  // -> [B, T] per-token scalar (float32)
  // value at each row's last true mask position -> [B]
  torch::Tensor score_last(const torch::Tensor& tokens, const torch::Tensor& mask);
  // Several responses to one prompt with the prompt forwarded once (the reward model's K
  // responses per prompt), in two calls so that one prompt pass serves several response batches:
  // encode_prompts(prompts [G, Tp] int64 LEFT-padded, prompt_mask [G, Tp] bool) runs the prompts
  // and keeps their keys/values; score_responses(prefix, responses [R, Tr] int64 RIGHT-padded,
  // response_mask [R, Tr] bool with >= 1 real token per row, row_group [R] int64 in [0, G))
  // reads response r as prompt[row_group[r]] + response[r] (positions continue after the
  // prompt's last real token) and returns its value at its last real token -> [R]. Equal, up to
  // round-off, to score_last on the concatenated rows; gradients flow to every parameter through
  // both passes (keep the prefix alive until backward). The caller keeps prompt + response
  // within cfg.max_seq_len.
  struct PromptPrefix {
    KVCache cache;       // per layer [G, Hkv, Tp, D]
    torch::Tensor attention_mask;  // [G, Tp] bool: real prompt tokens
    torch::Tensor len;   // [G] int64 real prompt tokens
  };
  PromptPrefix encode_prompts(const torch::Tensor& prompts, const torch::Tensor& prompt_mask);
  torch::Tensor score_responses(const PromptPrefix& prefix, const torch::Tensor& responses,
                                const torch::Tensor& response_mask, const torch::Tensor& row_group);
  ModelConfig cfg;
  Transformer trunk{nullptr};
  torch::nn::Linear score{nullptr};
  // Rows that went through the trunk to a score: + B per score_last, + R per score_responses
  // (prompt passes of encode_prompts not counted). The RM trainer reports it as forward_rows.
  int64_t scored_rows = 0;
};
TORCH_MODULE(ScalarModel);

// Puts a module in eval mode (no dropout) for a scope and restores its previous mode on exit,
// exceptions included: every evaluation and generation path uses it.
class EvalMode {
 public:
  explicit EvalMode(torch::nn::Module& m) : m_(m), was_training_(m.is_training()) { m_.eval(); }
  ~EvalMode() { m_.train(was_training_); }
  EvalMode(const EvalMode&) = delete;
  EvalMode& operator=(const EvalMode&) = delete;

 private:
  torch::nn::Module& m_;
  bool was_training_;
};

// Name of the trunk submodule for a family: "transformer" (gpt2) | "model" (the others).
std::string trunk_name(Family);

}  // namespace rlhf
