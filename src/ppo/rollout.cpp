#include "ppo/rollout.h"

#include <algorithm>
#include <optional>

#include "common/core/check.h"
#include "common/tokenizer/tokenizer.h"
#include "common/model/lm_loss.h"
#include "common/model/rollout_engine.h"

namespace rlhf {

namespace {
// A copy of r with every defined per-row tensor passed through f.
template <class F>
Rollout map_rows(const Rollout& r, F f) {
  Rollout o;
  auto s = [&](const torch::Tensor& t) { return t.defined() ? f(t) : t; };
  o.tokens = s(r.tokens); o.attention_mask = s(r.attention_mask); o.positions = s(r.positions);
  o.response_mask = s(r.response_mask);
  o.P = r.P; o.N = r.N; o.share_prompts = r.share_prompts;
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
  r.share_prompts = sc.engine == Engine::Paged;
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

namespace {
// Rows of a rollout that share a prompt (a GRPO group): group id per row, the first row of each.
struct SharedPrompts {
  torch::Tensor row_group;   // [B] int64 on the rollout's device
  torch::Tensor first_row;   // [G] int64 on the rollout's device
};

// The grouping when some rows share a prompt and the trunk can run the prompt once (no
// activation checkpointing, which a cached pass cannot use, and no ZeRO-3 block hooks, whose
// collectives expect one trunk pass per forward); else nothing.
std::optional<SharedPrompts> shared_prompts(const TransformerImpl& trunk, const Rollout& r) {
  if (!r.share_prompts || trunk.cfg.activation_checkpointing || trunk.has_block_hooks() || r.N < 1)
    return std::nullopt;
  const std::vector<int64_t> g =
      prompt_groups(r.tokens.narrow(1, 0, r.P), r.attention_mask.narrow(1, 0, r.P));
  const int64_t G = *std::max_element(g.begin(), g.end()) + 1;
  if (G == static_cast<int64_t>(g.size())) return std::nullopt;  // no prompt repeats
  std::vector<int64_t> first(G, -1);
  for (size_t b = 0; b < g.size(); ++b)
    if (first[g[b]] < 0) first[g[b]] = static_cast<int64_t>(b);
  const auto dev = r.tokens.device();
  return SharedPrompts{torch::tensor(g, torch::kLong).to(dev), torch::tensor(first, torch::kLong).to(dev)};
}

// The trunk's hidden states at positions [P - 1, P + N - 1) — those that predict the response
// tokens — with each distinct prompt run once: a prompt pass over the G prompts fills a KV cache;
// response passes (one per length bucket, each as wide as its longest row) feed every row's
// response tokens but its last after its prompt's keys and values (index_select, so gradients
// flow back through the prompt pass). Positions past a row's response are zero. -> [B, N, C]
torch::Tensor grouped_response_hidden(TransformerImpl& trunk, const Rollout& r, const SharedPrompts& s) {
  const int64_t G = s.first_row.size(0), P = r.P, N = r.N;
  const auto dev = r.tokens.device();
  auto prompts = r.tokens.narrow(1, 0, P).index_select(0, s.first_row);           // [G, P]
  auto pmask = r.attention_mask.narrow(1, 0, P).index_select(0, s.first_row);     // [G, P]
  const auto dtype = KVCache::storage_dtype(dev, trunk.parameters().at(0).scalar_type());
  KVCache cache = KVCache::allocate(trunk.cfg, G, P, torch::dtype(dtype).device(dev));
  auto hp = trunk.forward(prompts, positions_from_mask(pmask), pmask, &cache, 0);  // [G, P, C]
  auto last = hp.select(1, P - 1);                                                // [G, C]
  auto len_t = r.response_mask.sum(1).clamp_min(1).to(torch::kCPU).contiguous();  // [B]
  std::vector<int64_t> len(len_t.data_ptr<int64_t>(), len_t.data_ptr<int64_t>() + len_t.numel());
  std::vector<torch::Tensor> parts;
  std::vector<int64_t> order;
  for (const auto& bucket : length_groups(len)) {  // padding <= 1/3 per pass
    const int64_t L = len[bucket.front()], R = static_cast<int64_t>(bucket.size());
    auto rows = torch::tensor(bucket, torch::kLong).to(dev);                      // [R]
    auto rg = s.row_group.index_select(0, rows);                                  // [R]
    auto h = last.index_select(0, rg).unsqueeze(1);                               // [R, 1, C]
    if (L > 1) {
      KVCache rc;
      rc.capacity = P + L - 1;
      for (int64_t l = 0; l < trunk.cfg.n_layer; ++l) {
        const auto& pk = cache.k[l];
        auto pad = torch::zeros({R, pk.size(1), L - 1, pk.size(3)}, pk.options());
        rc.k.push_back(torch::cat({pk.index_select(0, rg), pad}, 2));            // [R, Hkv, P+L-1, D]
        rc.v.push_back(torch::cat({cache.v[l].index_select(0, rg), pad}, 2));
      }
      auto sel = [&](const torch::Tensor& t, int64_t from, int64_t n) {
        return t.index_select(0, rows).narrow(1, from, n);
      };
      auto hr = trunk.forward(sel(r.tokens, P, L - 1), sel(r.positions, P, L - 1),
                              sel(r.attention_mask, 0, P + L - 1), &rc, P);      // [R, L-1, C]
      h = torch::cat({h, hr}, 1);                                                 // [R, L, C]
    }
    if (L < N) h = torch::cat({h, torch::zeros({R, N - L, h.size(2)}, h.options())}, 1);
    parts.push_back(h);                                                           // [R, N, C]
    order.insert(order.end(), bucket.begin(), bucket.end());
  }
  std::vector<int64_t> inverse(order.size());
  for (size_t i = 0; i < order.size(); ++i) inverse[order[i]] = static_cast<int64_t>(i);
  return torch::cat(parts, 0).index_select(0, torch::tensor(inverse, torch::kLong).to(dev));  // [B, N, C]
}

// Hidden states predicting the response tokens [B, N, C]: grouped when prompts repeat, else one
// full pass sliced (the heads then run on the response window only).
torch::Tensor response_hidden(TransformerImpl& trunk, const Rollout& r) {
  if (auto s = shared_prompts(trunk, r)) return grouped_response_hidden(trunk, r, *s);
  auto h = trunk.forward(r.tokens, r.positions, r.attention_mask);               // [B, P+N, C]
  return h.slice(1, r.P - 1, r.P + r.N - 1);                                     // [B, N, C]
}
}  // namespace

torch::Tensor response_logprobs(CausalLM& m, const Rollout& r, double temperature,
                                torch::Tensor* entropy) {
  RLHF_CHECK(temperature > 0, "response_logprobs: temperature must be > 0, got {}", temperature);
  auto pred = m->logits_from_hidden(response_hidden(*m->trunk, r));  // [B, N, V]
  if (temperature != 1.0) pred = pred / temperature;
  auto targets = r.tokens.slice(1, r.P, r.P + r.N);                   // [B, N]
  if (entropy) *entropy = entropy_from_logits(pred);                  // [B, N]
  return token_logprobs(pred, targets);                               // [B, N]
}

torch::Tensor response_values(ScalarModel& v, const Rollout& r) {
  return v->score(response_hidden(*v->trunk, r)).squeeze(-1).to(torch::kFloat);  // [B, N]
}

torch::Tensor score_rollout(ScalarModel& rm, const Rollout& r) {
  torch::NoGradGuard ng;
  if (auto s = shared_prompts(*rm->trunk, r)) {  // each prompt once (the RM trainer's scorer)
    auto prefix = rm->encode_prompts(r.tokens.narrow(1, 0, r.P).index_select(0, s->first_row),
                                     r.attention_mask.narrow(1, 0, r.P).index_select(0, s->first_row));
    return rm->score_responses(prefix, r.tokens.narrow(1, r.P, r.N), r.response_mask, s->row_group);
  }
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
