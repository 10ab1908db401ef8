#include "ppo/rollout.h"

#include <algorithm>

#include "common/core/check.h"
#include "common/tokenizer/tokenizer.h"
#include "common/model/lm_loss.h"

namespace rlhf {

namespace {
// A copy of r with every defined per-row tensor passed through f.
template <class F>
Rollout map_rows(const Rollout& r, F f) {
  Rollout o;
  auto s = [&](const torch::Tensor& t) { return t.defined() ? f(t) : t; };
  o.tokens = s(r.tokens); o.attention_mask = s(r.attention_mask); o.positions = s(r.positions);
  o.response_mask = s(r.response_mask);
  o.P = r.P; o.N = r.N;
  o.raw_score = s(r.raw_score); o.score = s(r.score); o.has_eos = s(r.has_eos);
  o.sample_logp = s(r.sample_logp);
  o.old_logp = s(r.old_logp); o.ref_logp = s(r.ref_logp); o.old_values = s(r.old_values);
  o.kl = s(r.kl); o.rewards = s(r.rewards); o.advantages = s(r.advantages); o.returns = s(r.returns);
  return o;
}
}  // namespace

Rollout Rollout::slice(int64_t b, int64_t e) const {
  return map_rows(*this, [&](const torch::Tensor& t) { return t.slice(0, b, e); });
}

Rollout Rollout::rows(const torch::Tensor& index) const {
  return map_rows(*this, [&](const torch::Tensor& t) { return t.index_select(0, index.to(t.device())); });
}

std::pair<torch::Tensor, torch::Tensor> prompt_batch(const PromptData& data, const std::vector<int64_t>& idx,
                                                     const SpecialIds& ids, int64_t max_prompt) {
  std::vector<std::vector<int32_t>> rows;
  for (int64_t i : idx) {
    std::vector<int32_t> r;
    if (ids.bos >= 0) r.push_back(static_cast<int32_t>(ids.bos));
    const int64_t len = data.prompt.row_len(i);
    const int64_t keep = std::min<int64_t>(len, std::max<int64_t>(1, max_prompt - static_cast<int64_t>(r.size())));
    const int32_t* p = data.prompt.row_data(i);
    r.insert(r.end(), p + (len - keep), p + len);
    rows.push_back(std::move(r));
  }
  return left_pad(rows, ids.pad);
}

namespace {
Rollout rollout_of(const GenerateOutput& g, const SamplingConfig& sc) {
  Rollout r;
  r.tokens = g.tokens;                // [B, P+N]
  r.attention_mask = g.attention_mask;  // [B, P+N]
  r.positions = positions_from_mask(r.attention_mask);
  r.response_mask = g.response_mask;  // [B, N]
  r.P = g.prompt_len;
  r.N = g.new_tokens;
  r.sample_logp = g.logprobs;         // [B, N]
  // [B]: ended by a stop token (EOS or an extra stop id)
  r.has_eos = stop_mask(r.tokens.slice(1, r.P), sc).logical_and(r.response_mask).any(1);
  return r;
}
}  // namespace

Rollout generate_rollout(CausalLM& actor, const torch::Tensor& prompts, const torch::Tensor& prompt_mask,
                         const SamplingConfig& sc, uint64_t seed) {
  return rollout_of(generate(actor, prompts, prompt_mask, sc, seed), sc);
}

Rollout generate_rollout(CausalLM& actor, const torch::Tensor& prompts, const torch::Tensor& prompt_mask,
                         const SamplingConfig& sc, const std::vector<uint64_t>& row_seeds) {
  return rollout_of(generate(actor, prompts, prompt_mask, sc, row_seeds), sc);
}

torch::Tensor response_logprobs(CausalLM& m, const Rollout& r, double temperature,
                                torch::Tensor* entropy) {
  RLHF_CHECK(temperature > 0, "response_logprobs: temperature must be > 0, got {}", temperature);
  auto logits = m->forward(r.tokens, r.positions, r.attention_mask);            // [B, P+N, V]
  auto pred = logits.slice(1, r.P - 1, r.P + r.N - 1);                // [B, N, V]
  if (temperature != 1.0) pred = pred / temperature;
  auto targets = r.tokens.slice(1, r.P, r.P + r.N);                   // [B, N]
  if (entropy) *entropy = entropy_from_logits(pred);                  // [B, N]
  return token_logprobs(pred, targets);                               // [B, N]
}

torch::Tensor response_values(ScalarModel& v, const Rollout& r) {
  auto values = v->forward(r.tokens, r.positions, r.attention_mask);            // [B, P+N]
  return values.slice(1, r.P - 1, r.P + r.N - 1);                     // [B, N]
}

torch::Tensor score_rollout(ScalarModel& rm, const Rollout& r) {
  torch::NoGradGuard ng;
  return rm->score_last(r.tokens, r.attention_mask);  // [B]
}

std::vector<std::string> decode_responses(const Rollout& r, const Tokenizer& tok) {
  auto toks = r.tokens.slice(1, r.P).to(torch::kCPU);
  auto msk = r.response_mask.to(torch::kCPU);
  const std::vector<int32_t> stops = tok.stop_ids();
  std::vector<std::string> out;
  for (int64_t b = 0; b < toks.size(0); ++b) {
    std::vector<int32_t> ids;
    for (int64_t t = 0; t < r.N; ++t) {
      if (!msk[b][t].item<bool>()) break;
      int32_t id = static_cast<int32_t>(toks[b][t].item<int64_t>());
      if (std::find(stops.begin(), stops.end(), id) != stops.end()) break;
      ids.push_back(id);
    }
    out.push_back(tok.decode(ids));
  }
  return out;
}

std::vector<std::string> decode_prompts(const PromptData& data, const std::vector<int64_t>& idx,
                                        const Tokenizer& tok) {
  std::vector<std::string> out;
  for (int64_t i : idx) out.push_back(tok.decode(data.prompt.row(i)));
  return out;
}

}  // namespace rlhf
