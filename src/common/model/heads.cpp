// heads.cpp — the two model heads of model.h on the shared trunk: CausalLM (LM head, tied or
// untied) and ScalarModel (scalar score at the last real token; prompt-prefix scoring for the RM).
#include "common/model/model.h"

#include "common/core/check.h"
#include "common/core/strings.h"

namespace rlhf {

// ---- heads ---------------------------------------------------------------------------------
CausalLMImpl::CausalLMImpl(const ModelConfig& c) : cfg(c) {
  trunk = register_module(trunk_name(cfg.family), Transformer(cfg));
  if (!cfg.tie_embeddings) {
    lm_head = register_module(
        "lm_head", torch::nn::Linear(torch::nn::LinearOptions(cfg.d_model, cfg.vocab_size).bias(false)));
    torch::NoGradGuard ng;
    lm_head->weight.normal_(0.0, 0.02);
  }
}

torch::Tensor CausalLMImpl::head_weight() {
  return cfg.tie_embeddings ? trunk->token_embedding_weight() : lm_head->weight;
}

torch::Tensor CausalLMImpl::logits_from_hidden(const torch::Tensor& h) {
  return torch::linear(h, head_weight()).to(torch::kFloat);  // [B, T, V]
}

torch::Tensor CausalLMImpl::forward(const torch::Tensor& tokens, const torch::Tensor& positions,
                                    const torch::Tensor& attention_mask, KVCache* cache,
                                    int64_t cache_pos) {
  return logits_from_hidden(trunk(tokens, positions, attention_mask, cache, cache_pos));
}

ScalarModelImpl::ScalarModelImpl(const ModelConfig& c) : cfg(c) {
  trunk = register_module(trunk_name(cfg.family), Transformer(cfg));
  score = register_module("score", torch::nn::Linear(cfg.d_model, 1));
  torch::NoGradGuard ng;
  score->weight.normal_(0.0, 0.02);
  score->bias.zero_();
}

torch::Tensor ScalarModelImpl::forward(const torch::Tensor& tokens, const torch::Tensor& positions,
                                       const torch::Tensor& attention_mask) {
  return score(trunk(tokens, positions, attention_mask)).squeeze(-1).to(torch::kFloat);  // [B, T]
}

torch::Tensor ScalarModelImpl::score_last(const torch::Tensor& tokens, const torch::Tensor& mask) {
  scored_rows += tokens.size(0);
  auto h = trunk(tokens, positions_from_mask(mask), mask);  // [B, T, C]
  auto idx = last_true_index(mask);                         // [B]
  auto rows = torch::arange(tokens.size(0), idx.options());
  auto last = h.index({rows, idx});                          // [B, C]
  return score(last).squeeze(-1).to(torch::kFloat);          // [B]
}

// The prompt pass fills a KV cache [G, Hkv, Tp, D] (its hidden states are not needed); each
// response pass gets a cache that starts with its prompt's keys/values (index_select, so the
// gradient flows back into the prompt pass) and attends over [prompt | own tokens so far].
ScalarModelImpl::PromptPrefix ScalarModelImpl::encode_prompts(const torch::Tensor& prompts,
                                                             const torch::Tensor& prompt_mask) {
  RLHF_CHECK(prompts.dim() == 2 && prompt_mask.sizes() == prompts.sizes(),
             "encode_prompts: prompts and prompt_mask must be the same [G, Tp]");
  const auto dev = prompts.device();
  auto cache_dtype = KVCache::storage_dtype(dev, parameters().at(0).scalar_type());
  PromptPrefix p;
  p.attention_mask = prompt_mask.to(torch::kBool);
  p.len = p.attention_mask.to(torch::kLong).sum(1);  // [G]
  p.cache = KVCache::allocate(cfg, prompts.size(0), prompts.size(1), torch::dtype(cache_dtype).device(dev));
  trunk(prompts, positions_from_mask(p.attention_mask), p.attention_mask, &p.cache, 0);  // fills the cache
  return p;
}

torch::Tensor ScalarModelImpl::score_responses(const PromptPrefix& prefix, const torch::Tensor& responses,
                                               const torch::Tensor& response_mask,
                                               const torch::Tensor& row_group) {
  RLHF_CHECK(responses.dim() == 2 && response_mask.sizes() == responses.sizes(),
             "score_responses: responses and response_mask must be the same [R, Tr]");
  RLHF_CHECK(row_group.dim() == 1 && row_group.size(0) == responses.size(0),
             "score_responses: row_group must be [R={}]", responses.size(0));
  const int64_t R = responses.size(0), Tr = responses.size(1), Tp = prefix.cache.capacity;
  scored_rows += R;
  const auto dev = responses.device();
  auto rg = row_group.to(dev, torch::kLong);
  KVCache rc;
  rc.capacity = Tp + Tr;
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    const auto& pk = prefix.cache.k[l];
    auto pad = torch::zeros({R, pk.size(1), Tr, pk.size(3)}, pk.options());
    rc.k.push_back(torch::cat({pk.index_select(0, rg), pad}, 2));  // [R, Hkv, Tp+Tr, D]
    rc.v.push_back(torch::cat({prefix.cache.v[l].index_select(0, rg), pad}, 2));
  }
  auto rmask = response_mask.to(torch::kBool);
  auto attention_mask = torch::cat({prefix.attention_mask.index_select(0, rg), rmask}, 1);  // [R, Tp+Tr]
  auto pos = (prefix.len.index_select(0, rg).unsqueeze(1) +
              torch::arange(Tr, torch::dtype(torch::kLong).device(dev)))
                 .clamp_max(cfg.max_seq_len - 1);  // [R, Tr]; only pad columns can be clamped
  auto h = trunk(responses, pos, attention_mask, &rc, Tp);               // [R, Tr, C]
  auto idx = last_true_index(rmask);                               // [R]
  auto last = h.index({torch::arange(R, idx.options()), idx});     // [R, C]
  return score(last).squeeze(-1).to(torch::kFloat);                // [R]
}

}  // namespace rlhf
