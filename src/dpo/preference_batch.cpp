// preference_batch.cpp — see preference_batch.h.
#include "dpo/preference_batch.h"

#include "common/model/lm_loss.h"

namespace rlhf {

GroupBatch ranked_group_batch(const RankedData& d, const std::vector<int64_t>& groups,
                              const SpecialIds& ids, int64_t max_len) {
  GroupBatch out;
  std::vector<PromptResponse> rows;
  out.offsets.assign(1, 0);
  for (int64_t g : groups) {
    const std::vector<PromptResponse> gr = d.group_rows(g);
    rows.insert(rows.end(), gr.begin(), gr.end());
    for (int64_t r = d.first_response(g); r < d.end_response(g); ++r) {
      out.ranks.push_back(d.ranks[r]);
      out.responses.push_back(r);
    }
    out.offsets.push_back(static_cast<int64_t>(rows.size()));
  }
  out.seq = build_seq_batch(rows, ids, max_len);
  return out;
}

torch::Tensor sequence_logprobs(CausalLM& model, const SeqBatch& b, const torch::Device& dev) {
  const torch::Tensor tokens = b.tokens.to(dev);                               // [B, T]
  const int64_t B = tokens.size(0), T = tokens.size(1);
  const torch::Tensor h = model->trunk(tokens, b.positions.to(dev), b.attention_mask.to(dev));  // [B, T, C]
  // Position t-1 predicts token t: the hidden states before each target.
  const torch::Tensor sel = b.loss_mask.to(dev).slice(1, 1, T);              // [B, T-1] bool
  const torch::Tensor h_pred = h.slice(1, 0, T - 1).index({sel});              // [M, C]
  const torch::Tensor targets = tokens.slice(1, 1, T).index({sel});            // [M]
  const torch::Tensor row = torch::arange(B, torch::TensorOptions().dtype(torch::kLong).device(dev))
                                .unsqueeze(1).expand({B, T - 1}).index({sel});  // [M]
  const torch::Tensor logits = model->logits_from_hidden(h_pred.unsqueeze(0));  // [1, M, V] float32
  const torch::Tensor lp = token_logprobs(logits, targets.unsqueeze(0)).squeeze(0);  // [M]
  return torch::zeros({B}, lp.options()).index_add(0, row, lp);                // [B]
}

torch::Tensor target_counts(const SeqBatch& b) {
  const int64_t T = b.loss_mask.size(1);
  return b.loss_mask.slice(1, 1, T).sum(1).to(torch::kCPU, torch::kFloat);  // [B]
}

}  // namespace rlhf
