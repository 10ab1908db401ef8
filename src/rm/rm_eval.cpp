// rm_eval.cpp — see rm_eval.h.
#include "rm/rm_eval.h"

#include <algorithm>
#include <numeric>

#include "common/model/generate.h"
#include "common/model/model.h"
#include "rm/rm_loss.h"

namespace rlhf {

// Forward every response of `groups` once. Returns rewards [R] in group order.
// Each group's prompt is forwarded once and its K responses attend to the prompt's keys/values
// (ScalarModel::encode_prompts / score_responses): the prompt is about half of every row here,
// so this removes a third of the work. The responses are sorted by length and forwarded in a few
// equal-count buckets (a micro-batch mixes one-item lists with rambling answers). A reward
// depends only on its own prompt and response (causal attention, padding masked), so neither
// changes anything but round-off. Rows that would be truncated to max_len take the plain path
// (build_seq_batch's truncation rule, one full row per response).
torch::Tensor group_rewards(ScalarModel& rm, const RankedData& d, const std::vector<int64_t>& groups,
                            const SpecialIds& ids, int64_t max_len, const torch::Device& dev,
                            std::vector<int64_t>* offsets, std::vector<int32_t>* ranks) {
  std::vector<PromptResponse> rows;
  std::vector<int64_t> row_group;  // index into `groups`
  offsets->assign(1, 0);
  ranks->clear();
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const int64_t g = groups[gi];
    auto gr = d.group_rows(g);
    rows.insert(rows.end(), gr.begin(), gr.end());
    row_group.insert(row_group.end(), gr.size(), static_cast<int64_t>(gi));
    for (int64_t r = d.first_response(g); r < d.end_response(g); ++r) ranks->push_back(d.ranks[r]);
    offsets->push_back(static_cast<int64_t>(rows.size()));
  }
  const int64_t n = static_cast<int64_t>(rows.size());
  const int64_t n_bos = ids.bos >= 0 ? 1 : 0, n_eos = ids.add_eos && ids.eos >= 0 ? 1 : 0;
  bool fits = true;
  for (const auto& r : rows)
    fits = fits && n_bos + r.prompt_len + r.response_len + n_eos <= max_len && r.response_len + n_eos > 0 &&
           n_bos + r.prompt_len > 0;
  auto row_len = [&](int64_t i) {
    return fits ? rows[i].response_len : rows[i].prompt_len + rows[i].response_len;
  };
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return row_len(a) < row_len(b); });
  const int64_t buckets = std::clamp<int64_t>(n / 16, 1, 4);
  ScalarModelImpl::PromptPrefix prefix;
  if (fits) {
    std::vector<std::vector<int32_t>> prompts;
    for (int64_t g : groups) {
      std::vector<int32_t> s;
      if (n_bos) s.push_back(static_cast<int32_t>(ids.bos));
      s.insert(s.end(), d.prompt.row_data(g), d.prompt.row_data(g) + d.prompt.row_len(g));
      prompts.push_back(std::move(s));
    }
    auto [pt, pm] = pad_rows(prompts, ids.pad, /*left=*/true);  // [G, Tp]
    prefix = rm->encode_prompts(pt.to(dev), pm.to(dev));
  }
  std::vector<torch::Tensor> parts;
  for (int64_t b = 0; b < buckets; ++b) {
    const int64_t i0 = b * n / buckets, i1 = (b + 1) * n / buckets;
    if (fits) {
      std::vector<std::vector<int32_t>> resp;
      std::vector<int64_t> rg;
      for (int64_t i = i0; i < i1; ++i) {
        const auto& r = rows[order[i]];
        std::vector<int32_t> s(r.response, r.response + r.response_len);
        if (n_eos) s.push_back(static_cast<int32_t>(ids.eos));
        resp.push_back(std::move(s));
        rg.push_back(row_group[order[i]]);
      }
      auto [rt, rmask] = pad_rows(resp, ids.pad, /*left=*/false);  // [R_b, Tr]
      parts.push_back(rm->score_responses(prefix, rt.to(dev), rmask.to(dev),
                                          torch::tensor(rg, torch::kLong).to(dev)));  // [R_b]
    } else {
      std::vector<PromptResponse> part;
      for (int64_t i = i0; i < i1; ++i) part.push_back(rows[order[i]]);
      SeqBatch sb = build_seq_batch(part, ids, max_len);
      parts.push_back(rm->score_last(sb.tokens.to(dev), sb.attention_mask.to(dev)));  // [R_b]
    }
  }
  std::vector<int64_t> inverse(n);
  for (int64_t i = 0; i < n; ++i) inverse[order[i]] = i;
  auto inv = torch::tensor(inverse, torch::kLong).to(dev);
  return torch::cat(parts).index_select(0, inv);  // [R]
}

RankEval evaluate_ranked(ScalarModel& rm, const RankedData& data, const SpecialIds& ids,
                         int64_t max_len, int64_t micro_groups, int64_t max_groups,
                         Communicator& comm, const torch::Device& device,
                         std::vector<float>* rewards, PairNormalizer normalizer) {
  torch::NoGradGuard ng;
  EvalMode eval_mode(*rm);
  const int64_t n = max_groups > 0 ? std::min(max_groups, data.size()) : data.size();
  RankEval e;
  double loss_sum = 0;
  torch::Tensor all;  // [responses] float, this rank's shard filled in
  if (rewards) all = torch::zeros({static_cast<int64_t>(data.responses.size())}, torch::kFloat);
  for (auto [begin, end] : rank_chunks(n, micro_groups, comm)) {
    std::vector<int64_t> groups;
    for (int64_t g = begin; g < end; ++g) groups.push_back(g);
    std::vector<int64_t> off;
    std::vector<int32_t> ranks;
    torch::Tensor r = group_rewards(rm, data, groups, ids, max_len, device, &off, &ranks);
    RankingLoss l = kwise_ranking_loss(r, off, ranks, normalizer);
    if (rewards) all.narrow(0, data.first_response(groups.front()), r.size(0)).copy_(r.cpu());
    loss_sum += l.loss.item<double>() * l.groups;
    e.pairs += l.pairs;
    e.correct += l.correct;
    e.margin_sum += l.margin_sum;
    e.groups += l.groups;
    e.forward_rows += r.size(0);
  }
  auto sum = [&](double v) { return comm.all_reduce_scalar(v); };
  e.pairs = static_cast<int64_t>(sum(e.pairs));
  e.correct = static_cast<int64_t>(sum(e.correct));
  e.margin_sum = sum(e.margin_sum);
  e.groups = static_cast<int64_t>(sum(e.groups));
  e.forward_rows = static_cast<int64_t>(sum(e.forward_rows));
  const double total_loss = sum(loss_sum);
  e.loss = e.groups ? total_loss / e.groups : 0.0;
  if (rewards) {
    comm.all_reduce(all);
    rewards->assign(all.data_ptr<float>(), all.data_ptr<float>() + all.numel());
  }
  return e;
}

double mean_reward_on(ScalarModel& rm, const SftData& data, const SpecialIds& ids, int64_t max_len,
                      int64_t micro_batch, int64_t max_rows, Communicator& comm,
                      const torch::Device& device) {
  torch::NoGradGuard ng;
  EvalMode eval_mode(*rm);
  const int64_t n = max_rows > 0 ? std::min(max_rows, data.size()) : data.size();
  double total = 0;
  for (auto [begin, end] : rank_chunks(n, micro_batch, comm)) {
    std::vector<PromptResponse> rows;
    for (int64_t i = begin; i < end; ++i) rows.push_back(data.row(i));
    SeqBatch b = build_seq_batch(rows, ids, max_len);
    total += rm->score_last(b.tokens.to(device), b.attention_mask.to(device)).sum().item<double>();
  }
  return comm.all_reduce_scalar(total) / std::max<int64_t>(1, n);
}

}  // namespace rlhf
