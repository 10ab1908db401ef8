// generate.h — batched autoregressive sampling (rollouts, evaluation): the static-batch sampler
// here, and the entry point of the rollout engine (rollout_engine.h), chosen by cfg.engine.
//
// Contract:
// - prompts [B, P] int64 left-padded, prompt_mask [B, P] bool; every row needs >= 1 real token
//   (checked once, up front). Prompts are moved to the model's device.
// - One prefill pass over the prompts fills a KV cache of capacity P + max_new_tokens (must be
//   <= cfg.max_seq_len), then one decode step per new token. Positions come from the mask
//   (positions_from_mask), so a prompt alone and the same prompt inside a left-padded batch see
//   identical positions and keys.
// - Sampling: temperature 0 = greedy (argmax of the raw logits). Otherwise logits / temperature,
//   then top-k (0 = off), then top-p (1 = off; keeps the smallest prefix of the sorted
//   distribution whose mass reaches top_p, at least one token), then a draw with the
//   exponential-race trick (argmax p_i / E_i, E_i ~ Exp(1)) from a private generator seeded with
//   `seed`, or one per row seeded with `row_seeds[b]` (CPU: CPUGeneratorImpl; CUDA: a clone of
//   the device's default generator, reseeded). Same seed(s), same device, same inputs -> same
//   output.
// - Per-row EOS stop (cfg.stop_at_eos && cfg.eos_id >= 0): the EOS token is kept and masked in;
//   afterwards the row emits pad_id with mask false and logprob 0. The only host syncs in the
//   loop are an "all rows finished?" check every eos_check_every steps.
// - Decode modes (DecodeMode below): same tokens for the same seed, log-probs equal up to
//   round-off.
// - Runs under NoGradGuard (never InferenceMode) and in eval mode (the model's train/eval mode is
//   restored afterwards).
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "common/data/batch.h"
#include "common/model/model.h"

namespace rlhf {

// How generate() runs its decode steps (the results are the same; the test suite checks it):
// - Eager: one ordinary cached forward per token over the filled cache prefix, sampling on the
//   side (host launches every kernel).
// - Static: every step has fixed shapes and host arguments; the step decodes, samples (the
//   exponential noise is drawn outside the step from the same generator, in the same order as
//   Eager), records the token/log-prob/mask and advances its own counters on the device.
//   Attention covers the cache up to the next multiple of attend_bucket slots. On CUDA (CUDA
//   build) each bucket's step is captured once in a CUDA graph and replayed per token, so a
//   token costs one noise draw + one graph launch; elsewhere the same step runs uncaptured.
// - Auto: Static on CUDA, Eager elsewhere. The environment variable RLHF_CUDA_GRAPH=0 makes Auto
//   mean Eager and stops Static from capturing graphs.
enum class DecodeMode { Auto, Eager, Static };
inline constexpr EnumNames<DecodeMode, 3> kDecodeModeNames{{{DecodeMode::Auto, "auto"},
    {DecodeMode::Eager, "eager"}, {DecodeMode::Static, "static"}}};

// Which sampler runs the per-row-seeded generate() (the single-seed one is always Static):
// - Paged: the rollout engine (rollout_engine.h): paged KV cache, continuous batching, one
//   prefill per distinct prompt shared by its samples.
// - Static: one left-padded batch with a static KV cache that runs until its longest row ends.
enum class Engine { Paged, Static };
inline constexpr EnumNames<Engine, 2> kEngineNames{{{Engine::Paged, "paged"},
    {Engine::Static, "static"}}};

// The rollout engine's limits (Engine::Paged).
struct EngineOptions {
  int64_t max_batch_rows = 256;     // rows decoded together; a prompt's samples enter together
  int64_t max_batch_tokens = 8192;  // token positions of one prefill pass (>= 1 prompt always)
  int64_t block_size = 16;          // KV positions per cache block
};

struct SamplingConfig {
  int64_t max_new_tokens = 64;
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  int64_t eos_id = -1;
  std::vector<int64_t> extra_stop_ids;  // also end a row (kept and masked in, like EOS)
  int64_t pad_id = 0;
  bool stop_at_eos = true;
  int64_t eos_check_every = 8;
  DecodeMode decode = DecodeMode::Auto;
  // Static decode: attention reads the cache up to the next multiple of this many slots (one
  // CUDA graph per bucket), not the whole cache. Must be > 0.
  int64_t attend_bucket = 64;
  Engine engine = Engine::Paged;
  EngineOptions engine_opt;
  // Per-row length limits (empty = max_new_tokens for every row; else one per row, each in
  // [1, max_new_tokens]): row b ends after row_max_new_tokens[b] tokens, as a request's own
  // max_tokens in a serving engine (benchmarks replay real length distributions with it).
  std::vector<int64_t> row_max_new_tokens;
};

// True where a token (any shape) ends a row: EOS or one of extra_stop_ids; all false when
// eos_id < 0. The one stop rule, for generate() and for callers that inspect its output.
torch::Tensor stop_mask(const torch::Tensor& tokens, const SamplingConfig& cfg);

// The one builder of a SamplingConfig from the user-facing knobs (PPO config, rlhf_eval flags,
// benchmarks): stop/pad ids from the tokenizer's special ids (eos < 0: no stop token; callers
// that fill the ids later keep stop_at_eos = true, so the stop applies once eos_id is set).
SamplingConfig sampling_config(int64_t max_new_tokens, double temperature, int64_t top_k,
                               double top_p, const SpecialIds& ids);

struct GenerateOutput {
  torch::Tensor tokens;          // [B, P + N] int64: the left-padded prompts then the generated tokens; positions after a row's EOS hold pad_id
  torch::Tensor attention_mask;  // [B, P + N] bool: prompt non-pad tokens + response tokens up to and including EOS
  torch::Tensor response_mask;   // [B, N] bool: generated tokens up to and including EOS
  torch::Tensor logprobs;        // [B, N] float: log-prob of each sampled token under log_softmax(logits / temperature) (temperature 1 when greedy; top-k/top-p not applied); 0 where masked
  int64_t prompt_len = 0;        // P
  int64_t new_tokens = 0;        // N actually generated (<= max_new_tokens; stops early when all rows hit EOS)
  int64_t cuda_graphs = 0;       // decode-step CUDA graphs captured and replayed (0: none used)
  // The work done, for benchmarks and logs (both engines fill them):
  int64_t prefill_tokens = 0;    // prompt positions run through the model (padding included)
  int64_t decode_rows = 0;       // rows fed through decode steps, summed over the steps
  int64_t decode_steps = 0;      // decode forward passes
  int64_t peak_kv_bytes = 0;     // KV memory at its largest (static: the whole cache)
};

// prompts [B,P] int64 left-padded, prompt_mask [B,P] bool. temperature 0 = greedy.
GenerateOutput generate(CausalLM& model, const torch::Tensor& prompts,
                        const torch::Tensor& prompt_mask, const SamplingConfig& cfg, uint64_t seed);
// The same with one generator per row, seeded with row_seeds[b] (size B): row b's tokens depend
// on its prompt and seed only, not on the other rows of the batch (up to the round-off of a
// different padding), so PPO draws the same responses on 1 rank or N ranks. cfg.engine Paged
// runs the rollout engine (same distribution, same per-row streams; N is then the longest
// response, not rounded up to eos_check_every), Static the static batch.
GenerateOutput generate(CausalLM& model, const torch::Tensor& prompts,
                        const torch::Tensor& prompt_mask, const SamplingConfig& cfg,
                        const std::vector<uint64_t>& row_seeds);

// left-pad ragged prompts: returns {tokens [B,P] int64, mask [B,P] bool} (CPU), P = longest row.
std::pair<torch::Tensor, torch::Tensor> left_pad(const std::vector<std::vector<int32_t>>& rows,
                                                 int64_t pad_id);
// Ragged rows -> {tokens [B,T] int64 filled with pad_id, mask [B,T] bool} (CPU), T = longest row,
// each row at the end (left = true, left_pad) or at the start (left = false) of its line.
std::pair<torch::Tensor, torch::Tensor> pad_rows(const std::vector<std::vector<int32_t>>& rows,
                                                 int64_t pad_id, bool left);

// Whether generate() will capture its decode steps in CUDA graphs for this config and device.
bool cuda_graph_enabled(const SamplingConfig& cfg, const torch::Device& dev);
// The decode mode generate() will run for this config and device (Eager or Static, never Auto).
DecodeMode resolved_decode_mode(const SamplingConfig& cfg, const torch::Device& dev);

// The sampling transform alone (exposed for tests): logits [B, V] float -> token ids [B] int64.
torch::Tensor sample_tokens(const torch::Tensor& logits, const SamplingConfig& cfg,
                            at::Generator& gen);
// The draw behind every sampler: logits [B, V], noise [B, V] ~ Exp(1) (unused when greedy) ->
// token ids [B]: argmax of the filtered probabilities / noise (the exponential race).
torch::Tensor draw_tokens(const torch::Tensor& logits, const SamplingConfig& cfg,
                          const torch::Tensor& noise);
// A private generator on `dev` seeded with `seed` (CPU: CPUGeneratorImpl; CUDA: a clone of the
// device's default generator, reseeded): the per-row sampling streams.
at::Generator sampling_generator(const torch::Device& dev, uint64_t seed);
// Log-probs [B] of tokens [B] under log_softmax(logits [B, V] / temperature) (temperature 1 when
// greedy): what every sampler records.
torch::Tensor sampled_logprobs(const torch::Tensor& logits, const torch::Tensor& tokens,
                               const SamplingConfig& cfg);
// Argument checks shared by the samplers (throws naming the bad knob); check_row_limits: the
// row_max_new_tokens of a batch of `rows`.
void check_sampling(const SamplingConfig& cfg);
void check_row_limits(const SamplingConfig& cfg, int64_t rows);

}  // namespace rlhf
