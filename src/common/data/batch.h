// batch.h — turning token rows into model inputs, the same way in every stage.
//
// Training sequences (SFT, RM, ptx) are right-padded:  [BOS] prompt response [EOS] pad...
//   tokens [B, T] int64, attention_mask [B, T] bool (real tokens), positions [B, T] int64 (0..len-1, pads 0),
//   loss_mask [B, T] bool: true at response tokens and the EOS, i.e. the positions whose token
//   is predicted (loss on response only; on a row's target spans when it has them — chat rows:
//   the assistant turns). T = the longest row (<= max_len).
// Chat rows (DatasetMeta::chat()) are complete: for_rows(ids, meta) turns BOS and EOS off.
// Over-long rows: the prompt loses tokens from its start first (the end is what the response
// follows), then the response is cut at its end (and loses its EOS). Truncations are counted.
// Prompts for generation are left-padded: [pad...] [BOS] prompt (see left_pad in generate.h).
// BOS is added only when the tokenizer has one (all three kinds do; GPT-2's is <|endoftext|>).
#pragma once
#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "common/data/data.h"  // PromptResponse

namespace rlhf {

struct SpecialIds {
  int64_t bos = -1, eos = -1, pad = 0;
  std::vector<int64_t> stops;  // generation only: stop ids besides eos (e.g. <|eom_id|>)
  bool add_eos = true;         // training rows end with EOS (off for chat rows)
};

// Adds `id` to `stops` unless it is negative (none), the EOS (always a stop) or already there:
// the one rule for every extra stop id (generation_config, chat end of turn, ppo.stop_token).
void add_stop_id(std::vector<int64_t>& stops, int64_t eos, int64_t id);

// The ids to frame a dataset's rows with: plain rows as given; chat rows get no BOS and no EOS
// (the template wrote them) and their end-of-turn id joins the stops.
SpecialIds for_rows(SpecialIds ids, const DatasetMeta& m);

// Where the rows of a packed batch lie (padding-free training, train.packing): the rows' real
// tokens back to back on one line [1, T]; attention stays inside each row (model.h,
// TransformerImpl::forward_packed lays q/k/v out per row for attention only). Rows are grouped by
// length (longest first; a new group where a row is shorter than 3/4 of its group's longest), and
// each group's attention runs on [its rows, its longest row], so attention's padding stays small
// too.
struct PackedRows {
  struct Group {
    torch::Tensor gather;    // [R * L] int64: packed index of the group's row r, token i (i < its length), else T
    torch::Tensor key_mask;  // [R, L] bool: the rows' real tokens
    int64_t rows = 0, longest = 0;  // R, L
  };
  std::vector<Group> groups;
  torch::Tensor scatter;  // [T] int64: where each packed token lies in the groups' [R * L] layouts end to end
  torch::Tensor row_of;   // [1, T] int64: the batch row of each packed token
  int64_t rows = 0;       // B
  bool defined() const { return scatter.defined(); }
  PackedRows to(const torch::Device& dev) const;
};

struct SeqBatch {
  torch::Tensor tokens;       // [B, T] int64
  torch::Tensor attention_mask;  // [B, T] bool: real tokens (pads false)
  torch::Tensor positions;    // [B, T] int64
  torch::Tensor loss_mask;    // [B, T] bool: the tokens the loss predicts (targets)
  int64_t target_tokens = 0;  // number of true entries in loss_mask
  int64_t truncated = 0;      // rows that had to be cut to max_len
  // Defined: the fields above are one packed line [1, T] (pack_rows), positions restarting at 0
  // in each row, attention_mask all true, loss_mask the rows' targets.
  PackedRows packed;
};

// Row indices grouped by length, the one rule for padding-bounded passes (packed attention,
// PPO's response passes): rows sorted longest first (stable), a new group where a row is shorter
// than 3/4 of its group's longest, so padding a group to its longest row adds at most a third.
std::vector<std::vector<int64_t>> length_groups(const std::vector<int64_t>& len);

// The rows of a right-padded batch packed back to back (same tokens, positions and targets, no
// pads): [B, Tpad] -> [1, T], T = its real tokens.
SeqBatch pack_rows(const SeqBatch& padded);

SeqBatch build_seq_batch(const std::vector<PromptResponse>& rows, const SpecialIds& ids,
                         int64_t max_len);
// The tokens build_seq_batch gives a row: its framing (BOS, EOS), then the cut to max_len.
int64_t framed_length(const PromptResponse& row, const SpecialIds& ids, int64_t max_len);

// Contiguous windows of a token stream (pretraining / ptx): rows of exactly seq_len tokens
// starting at the given offsets (wrapping around the end of the stream); every token is a target
// except each row's first.
SeqBatch build_stream_batch(const std::vector<int32_t>& stream, const std::vector<int64_t>& starts,
                            int64_t seq_len);

}  // namespace rlhf
