#include "common/data/batch.h"

#include <algorithm>

#include "common/core/check.h"

namespace rlhf {

SpecialIds for_rows(SpecialIds ids, const DatasetMeta& m) {
  if (!m.chat()) return ids;
  ids.bos = -1;
  ids.add_eos = false;
  add_stop_id(ids.stops, ids.eos, m.end_of_turn);
  return ids;
}

void add_stop_id(std::vector<int64_t>& stops, int64_t eos, int64_t id) {
  if (id >= 0 && id != eos && std::find(stops.begin(), stops.end(), id) == stops.end()) stops.push_back(id);
}

namespace {
// Whether response position j is a target of row r (no spans: every position is).
bool is_target(const PromptResponse& r, int64_t j) {
  if (r.spans == nullptr) return true;
  for (int64_t k = 0; k + 1 < r.spans_len; k += 2)
    if (j >= r.spans[k] && j < r.spans[k + 1]) return true;
  return false;
}
}  // namespace

SeqBatch build_seq_batch(const std::vector<PromptResponse>& rows, const SpecialIds& ids,
                         int64_t max_len) {
  RLHF_CHECK(!rows.empty(), "build_seq_batch: empty batch");
  const int64_t n_bos = ids.bos >= 0 ? 1 : 0;
  const int64_t n_eos = ids.add_eos && ids.eos >= 0 ? 1 : 0;
  RLHF_CHECK(max_len > n_bos + 1, "build_seq_batch: max_len {} too small", max_len);
  std::vector<std::vector<int64_t>> seqs(rows.size());
  std::vector<int64_t> resp_start(rows.size());
  SeqBatch b;
  int64_t T = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    int64_t p_len = r.prompt_len, r_len = r.response_len, eos = n_eos;
    int64_t over = n_bos + p_len + r_len + eos - max_len;
    if (over > 0) {
      ++b.truncated;
      // Keep at least one prompt token when there is a prompt; cut its start first.
      int64_t cut_p = std::min(over, std::max<int64_t>(0, p_len - 1));
      p_len -= cut_p;
      over -= cut_p;
      if (over > 0 && eos) {
        eos = 0;
        --over;
      }
      if (over > 0) r_len -= std::min(over, r_len);
    }
    auto& s = seqs[i];
    if (n_bos) s.push_back(ids.bos);
    s.insert(s.end(), r.prompt + (r.prompt_len - p_len), r.prompt + r.prompt_len);
    resp_start[i] = static_cast<int64_t>(s.size());
    s.insert(s.end(), r.response, r.response + r_len);
    if (eos) s.push_back(ids.eos);
    T = std::max<int64_t>(T, static_cast<int64_t>(s.size()));
  }
  const int64_t B = static_cast<int64_t>(rows.size());
  b.tokens = torch::full({B, T}, ids.pad, torch::kLong);          // [B, T]
  b.attention_mask = torch::zeros({B, T}, torch::kBool);                     // [B, T]
  b.loss_mask = torch::zeros({B, T}, torch::kBool);              // [B, T]
  auto tok = b.tokens.accessor<int64_t, 2>();
  auto msk = b.attention_mask.accessor<bool, 2>();
  auto tgt = b.loss_mask.accessor<bool, 2>();
  for (int64_t i = 0; i < B; ++i) {
    const auto& s = seqs[i];
    for (int64_t t = 0; t < static_cast<int64_t>(s.size()); ++t) {
      tok[i][t] = s[t];
      msk[i][t] = true;
      const int64_t j = t - resp_start[i];  // response position (the EOS: past the response)
      if (j >= 0 && t > 0 && (j >= rows[i].response_len || is_target(rows[i], j))) {
        tgt[i][t] = true;
        ++b.target_tokens;
      }
    }
  }
  b.positions = torch::arange(T, torch::kLong).unsqueeze(0).expand({B, T}).contiguous()
                    .masked_fill(b.attention_mask.logical_not(), 0);  // [B, T]
  return b;
}

SeqBatch build_stream_batch(const std::vector<int32_t>& stream, const std::vector<int64_t>& starts,
                            int64_t seq_len) {
  const int64_t n = static_cast<int64_t>(stream.size());
  RLHF_CHECK(n > 0, "build_stream_batch: empty token stream");
  const int64_t B = static_cast<int64_t>(starts.size());
  SeqBatch b;
  b.tokens = torch::empty({B, seq_len}, torch::kLong);  // [B, T]
  auto tok = b.tokens.accessor<int64_t, 2>();
  for (int64_t i = 0; i < B; ++i)
    for (int64_t t = 0; t < seq_len; ++t) tok[i][t] = stream[(starts[i] + t) % n];
  b.attention_mask = torch::ones({B, seq_len}, torch::kBool);
  b.loss_mask = torch::ones({B, seq_len}, torch::kBool);
  b.loss_mask.select(1, 0).fill_(false);
  b.target_tokens = B * (seq_len - 1);
  b.positions = torch::arange(seq_len, torch::kLong).unsqueeze(0).expand({B, seq_len}).contiguous();
  return b;
}

PackedRows PackedRows::to(const torch::Device& dev) const {
  PackedRows p = *this;
  for (auto& g : p.groups) {
    g.gather = g.gather.to(dev);
    g.key_mask = g.key_mask.to(dev);
  }
  p.scatter = scatter.to(dev);
  p.row_of = row_of.to(dev);
  return p;
}

int64_t framed_length(const PromptResponse& r, const SpecialIds& ids, int64_t max_len) {
  const int64_t n = (ids.bos >= 0 ? 1 : 0) + r.prompt_len + r.response_len + (ids.add_eos && ids.eos >= 0 ? 1 : 0);
  return std::min(n, max_len);
}

std::vector<std::vector<int64_t>> length_groups(const std::vector<int64_t>& len) {
  std::vector<int64_t> order(len.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return len[x] > len[y]; });
  std::vector<std::vector<int64_t>> out;
  for (int64_t b : order) {
    if (out.empty() || 4 * len[b] < 3 * len[out.back().front()]) out.emplace_back();
    out.back().push_back(b);
  }
  return out;
}

SeqBatch pack_rows(const SeqBatch& padded) {
  RLHF_CHECK(!padded.packed.defined(), "pack_rows: the batch is packed already");
  auto mask = padded.attention_mask.to(torch::kCPU, torch::kBool).contiguous();  // [B, L]
  const int64_t B = mask.size(0), L = mask.size(1);
  const bool* m = mask.data_ptr<bool>();
  std::vector<int64_t> len(B, 0), start(B, 0), row_of;
  int64_t T = 0;
  for (int64_t b = 0; b < B; ++b) {
    start[b] = T;
    for (int64_t i = 0; i < L; ++i)
      if (m[b * L + i]) {
        RLHF_CHECK(i == 0 || m[b * L + i - 1], "pack_rows: row {} is not right-padded", b);
        ++len[b];
        row_of.push_back(b);
      }
    T += len[b];
  }
  SeqBatch out;
  std::vector<int64_t> scatter(T);
  int64_t offset = 0;  // of the current group in the groups' layouts end to end
  for (const std::vector<int64_t>& rows : length_groups(len)) {
    PackedRows::Group g;
    g.rows = static_cast<int64_t>(rows.size());
    g.longest = std::max<int64_t>(len[rows.front()], 1);
    std::vector<int64_t> gather(g.rows * g.longest);
    g.key_mask = torch::zeros({g.rows, g.longest}, torch::kBool);
    for (int64_t r = 0; r < g.rows; ++r) {
      const int64_t b = rows[r];
      for (int64_t i = 0; i < g.longest; ++i) {
        const bool real = i < len[b];
        gather[r * g.longest + i] = real ? start[b] + i : T;
        if (real) scatter[start[b] + i] = offset + r * g.longest + i;
      }
      g.key_mask[r].narrow(0, 0, len[b]).fill_(true);
    }
    g.gather = torch::tensor(gather, torch::kLong);
    offset += g.rows * g.longest;
    out.packed.groups.push_back(std::move(g));
  }
  auto sel = [&](const torch::Tensor& t) { return t.masked_select(mask).unsqueeze(0); };  // [1, T]
  out.tokens = sel(padded.tokens.to(torch::kCPU));
  out.positions = sel(padded.positions.to(torch::kCPU));
  out.loss_mask = sel(padded.loss_mask.to(torch::kCPU));
  out.attention_mask = torch::ones({1, T}, torch::kBool);
  out.target_tokens = padded.target_tokens;
  out.truncated = padded.truncated;
  out.packed.scatter = torch::tensor(scatter, torch::kLong);
  out.packed.row_of = torch::tensor(row_of, torch::kLong).unsqueeze(0);
  out.packed.rows = B;
  return out;
}

}  // namespace rlhf
