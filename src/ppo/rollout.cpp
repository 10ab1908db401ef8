#include "ppo/rollout.h"

#include "common/core/check.h"
#include "common/tokenizer/tokenizer.h"
#include "common/model/lm_loss.h"

namespace rlhf {

Rollout Rollout::slice(int64_t b, int64_t e) const {
  Rollout o;
  auto s = [&](const torch::Tensor& t) { return t.defined() ? t.slice(0, b, e) : t; };
  o.tokens = s(tokens); o.mask = s(mask); o.positions = s(positions); o.resp_mask = s(resp_mask);
  o.P = P; o.N = N;
  o.raw_score = s(raw_score); o.score = s(score); o.has_eos = s(has_eos);
  o.old_logp = s(old_logp); o.ref_logp = s(ref_logp); o.old_values = s(old_values);
  o.kl = s(kl); o.rewards = s(rewards); o.advantages = s(advantages); o.returns = s(returns);
  return o;
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

Rollout generate_rollout(CausalLM& actor, const torch::Tensor& prompts, const torch::Tensor& prompt_mask,
                         const SamplingConfig& sc, uint64_t seed) {
  torch::NoGradGuard ng;
  GenerateOutput g = generate(actor, prompts, prompt_mask, sc, seed);
  Rollout r;
  r.tokens = g.tokens;                // [B, P+N]
  r.mask = g.attention_mask;          // [B, P+N]
  r.positions = positions_from_mask(r.mask);
  r.resp_mask = g.response_mask;      // [B, N]
  r.P = g.prompt_len;
  r.N = g.new_tokens;
  r.has_eos = sc.eos_id >= 0
                  ? (r.tokens.slice(1, r.P).eq(sc.eos_id).logical_and(r.resp_mask)).any(1)
                  : torch::zeros({r.tokens.size(0)}, torch::dtype(torch::kBool).device(r.tokens.device()));
  return r;
}

torch::Tensor response_logprobs(CausalLM& m, const Rollout& r, torch::Tensor* entropy) {
  auto logits = m->forward(r.tokens, r.positions, r.mask);            // [B, P+N, V]
  auto pred = logits.slice(1, r.P - 1, r.P + r.N - 1);                // [B, N, V]
  auto targets = r.tokens.slice(1, r.P, r.P + r.N);                   // [B, N]
  if (entropy) *entropy = entropy_from_logits(pred);                  // [B, N]
  return token_logprobs(pred, targets);                               // [B, N]
}

torch::Tensor response_values(ScalarModel& v, const Rollout& r) {
  auto values = v->forward(r.tokens, r.positions, r.mask);            // [B, P+N]
  return values.slice(1, r.P - 1, r.P + r.N - 1);                     // [B, N]
}

torch::Tensor score_rollout(ScalarModel& rm, const Rollout& r) {
  torch::NoGradGuard ng;
  return rm->score_last(r.tokens, r.mask);  // [B]
}

std::vector<std::string> decode_responses(const Rollout& r, const Tokenizer& tok) {
  auto toks = r.tokens.slice(1, r.P).to(torch::kCPU);
  auto msk = r.resp_mask.to(torch::kCPU);
  std::vector<std::string> out;
  for (int64_t b = 0; b < toks.size(0); ++b) {
    std::vector<int32_t> ids;
    for (int64_t t = 0; t < r.N; ++t) {
      if (!msk[b][t].item<bool>()) break;
      int32_t id = static_cast<int32_t>(toks[b][t].item<int64_t>());
      if (id == tok.eos_id()) break;
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
