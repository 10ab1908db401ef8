// preference_batch.cpp — see preference_batch.h.
#include "dpo/preference_batch.h"

#include "common/model/lm_loss.h"
#include "common/train/train_common.h"

namespace rlhf {

GroupBatch ranked_group_batch(const RankedData& d, const std::vector<int64_t>& groups,
                              const SpecialIds& ids, int64_t max_len, bool packing) {
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
  if (packing) out.seq = pack_rows(out.seq);
  return out;
}

torch::Tensor sequence_logprobs(CausalLM& model, const SeqBatch& b, const torch::Device& dev) {
  const torch::Tensor tokens = b.tokens.to(dev);                               // [B, T] (packed [1, T])
  const int64_t T = tokens.size(1);
  const int64_t B = b.packed.defined() ? b.packed.rows : tokens.size(0);      // rows
  const torch::Tensor h = batch_hidden(model->trunk, b, dev);                  // [B, T, C]
  // Position t-1 predicts token t: the hidden states before each target (never a row's first
  // token, so a packed row's targets are predicted from inside the row).
  const torch::Tensor sel = b.loss_mask.to(dev).slice(1, 1, T);              // [B, T-1] bool
  const torch::Tensor h_pred = h.slice(1, 0, T - 1).index({sel});              // [M, C]
  const torch::Tensor targets = tokens.slice(1, 1, T).index({sel});            // [M]
  const torch::Tensor row_of = b.packed.defined()
      ? b.packed.row_of.to(dev)
      : torch::arange(B, torch::TensorOptions().dtype(torch::kLong).device(dev)).unsqueeze(1).expand({B, T});
  const torch::Tensor row = row_of.slice(1, 1, T).index({sel});                // [M]
  const torch::Tensor logits = model->logits_from_hidden(h_pred.unsqueeze(0));  // [1, M, V] float32
  const torch::Tensor lp = token_logprobs(logits, targets.unsqueeze(0)).squeeze(0);  // [M]
  return torch::zeros({B}, lp.options()).index_add(0, row, lp);                // [B]
}

torch::Tensor target_counts(const SeqBatch& b) {
  const int64_t T = b.loss_mask.size(1);
  if (b.packed.defined()) {
    auto sel = b.loss_mask.to(torch::kCPU).slice(1, 1, T);                           // [1, T-1]
    auto row = b.packed.row_of.to(torch::kCPU).slice(1, 1, T).index({sel});         // [M]
    return torch::zeros({b.packed.rows}, torch::kFloat).index_add(0, row, torch::ones({row.size(0)}));
  }
  return b.loss_mask.slice(1, 1, T).sum(1).to(torch::kCPU, torch::kFloat);  // [B]
}

}  // namespace rlhf
