// rollout.h — PPO experience: generate responses with the KV-cache generator, score them with the
// frozen reward model, and compute old/reference log-probs and values at the response positions.
//
// Layout: tokens [B, P + N] = left-padded prompt (P) then response (N). Response token t sits at
// sequence position P + t and is predicted from position P + t - 1, so log-probs and values for
// the response come from positions [P - 1, P + N - 1) of a full forward pass.
// Contract: all functions run under NoGradGuard except the ones named *_train, which build graphs.
#pragma once
#include <vector>

#include <torch/torch.h>

#include "common/data/batch.h"
#include "common/data/data.h"
#include "common/model/generate.h"
#include "common/model/model.h"

namespace rlhf {

// One iteration's experience, grouped by the step that fills each field (as OpenRLHF's
// Experience). Masks: attention_mask is the real-token mask of the whole sequence (keys a position
// may attend to); response_mask is the loss mask of the response window (the actions).
struct Rollout {
  // generate_rollout (the sampler):
  torch::Tensor tokens;          // [B, P+N] int64: left-padded prompt, then the response
  torch::Tensor attention_mask;  // [B, P+N] bool: real tokens
  torch::Tensor positions;       // [B, P+N] int64
  torch::Tensor response_mask;   // [B, N] bool: generated tokens up to and including EOS (actions)
  int64_t P = 0, N = 0;
  bool share_prompts = true;     // forwards run a prompt shared by rows once (false: full rows)
  torch::Tensor has_eos;         // [B] bool
  torch::Tensor sample_logp;     // [B, N] log-probs generate() recorded while sampling (0 off the mask)
  // the reward (ppo_trainer: reward/source.h; else make_experience's reward model):
  torch::Tensor raw_score;       // [B] the reward's output (an RM with its fitted bias)
  // make_experience (ppo_step.h):
  torch::Tensor score;           // [B] after the no-EOS penalty and clipping
  torch::Tensor old_logp, ref_logp, old_values;  // [B, N] policy, reference, critic (0 without)
  torch::Tensor kl;              // [B, N] per-token KL estimate (ppo.kl_estimator)
  torch::Tensor rewards;         // [B, N] shaped per-token rewards (−β·kl, + score at the end)
  torch::Tensor advantages, returns;  // [B, N] GAE or critic_free.h (whitened as configured)

  int64_t batch() const { return tokens.size(0); }
  Rollout slice(int64_t begin, int64_t end) const;  // rows [begin, end)
  Rollout rows(const torch::Tensor& index) const;   // rows index [b] (int64, on the device)
};

// A rollout whose prompts are rows idx of a prompt set (idx.size() == ro.batch()): what the
// rewards that decode text score (reward/source.h), several batches at a time.
struct RolloutBatch {
  const Rollout* ro;
  const std::vector<int64_t>* idx;
};

// [BOS] + prompt rows, prompts truncated from the start to max_prompt tokens; left-padded.
std::pair<torch::Tensor, torch::Tensor> prompt_batch(const PromptData& data, const std::vector<int64_t>& idx,
                                                     const SpecialIds& ids, int64_t max_prompt);

// Generate and fill tokens/attention_mask/positions/response_mask/P/N/has_eos/sample_logp;
// share_prompts = (sc.engine == Engine::Paged): ppo.rollout_engine: static is the whole padded,
// per-row path.
Rollout generate_rollout(CausalLM& actor, const torch::Tensor& prompts, const torch::Tensor& prompt_mask,
                         const SamplingConfig& sc, uint64_t seed);
// The same with one sampling stream per row (generate.h): ppo_train seeds row b with its index in
// the global batch, so the responses do not depend on the number of ranks.
Rollout generate_rollout(CausalLM& actor, const torch::Tensor& prompts, const torch::Tensor& prompt_mask,
                         const SamplingConfig& sc, const std::vector<uint64_t>& row_seeds);

// The forwards of a rollout run each distinct prompt once when rows share it (a GRPO group):
// a prompt pass fills a KV cache, a response pass reads it (gradients flow through both), equal
// to the full pass up to round-off; the heads run on the response window only. Models with
// activation checkpointing or ZeRO-3 block hooks, and rollouts with share_prompts false, take the
// full pass.
// Log-probs (and optionally entropies) of the response tokens under log_softmax(logits /
// temperature), the distribution generate() samples from (and records) at that temperature:
// [B, N]. temperature > 0. Builds a graph when grad mode is on.
torch::Tensor response_logprobs(CausalLM& m, const Rollout& r, double temperature,
                                torch::Tensor* entropy = nullptr);
// Values V(s_t) for the response positions: [B, N]. Builds a graph when grad mode is on.
torch::Tensor response_values(ScalarModel& v, const Rollout& r);
// Reward-model score at each row's last real token: [B].
torch::Tensor score_rollout(ScalarModel& rm, const Rollout& r);

// Per-row decoded response text (up to, not including, EOS) for the hidden scorer and samples.
std::vector<std::string> decode_responses(const Rollout& r, const class Tokenizer& tok);
std::vector<std::string> decode_prompts(const PromptData& data, const std::vector<int64_t>& idx,
                                        const class Tokenizer& tok);

}  // namespace rlhf
