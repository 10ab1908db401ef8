#include "rm/rm_trainer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/generate.h"
#include "common/run.h"
#include "common/train_common.h"
#include "common/train_loop.h"
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
static torch::Tensor group_rewards(ScalarModel& rm, const RankedData& d, const std::vector<int64_t>& groups,
                                   const SpecialIds& ids, int64_t max_len, const torch::Device& dev,
                                   std::vector<int64_t>* offsets, std::vector<int32_t>* ranks) {
  std::vector<PromptResponse> rows;
  std::vector<int64_t> row_group;  // index into `groups`
  offsets->assign(1, 0);
  ranks->clear();
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const int64_t g = groups[gi];
    auto gr = group_rows(d, g);
    rows.insert(rows.end(), gr.begin(), gr.end());
    row_group.insert(row_group.end(), gr.size(), static_cast<int64_t>(gi));
    for (int64_t r = d.group_offsets[g]; r < d.group_offsets[g + 1]; ++r) ranks->push_back(d.ranks[r]);
    offsets->push_back(static_cast<int64_t>(rows.size()));
  }
  const int64_t n = static_cast<int64_t>(rows.size());
  const int64_t n_bos = ids.bos >= 0 ? 1 : 0, n_eos = ids.eos >= 0 ? 1 : 0;
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
      parts.push_back(rm->score_last(sb.tokens.to(dev), sb.mask.to(dev)));  // [R_b]
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
                         std::vector<float>* rewards) {
  torch::NoGradGuard ng;
  const bool was_training = rm->is_training();
  rm->eval();
  const int64_t n = max_groups > 0 ? std::min(max_groups, data.size()) : data.size();
  RankEval e;
  double loss_sum = 0;
  torch::Tensor all;  // [responses] float, this rank's shard filled in
  if (rewards) all = torch::zeros({static_cast<int64_t>(data.responses.size())}, torch::kFloat);
  for (int64_t s = comm.rank() * micro_groups; s < n; s += micro_groups * comm.world_size()) {
    std::vector<int64_t> groups;
    for (int64_t g = s; g < std::min(n, s + micro_groups); ++g) groups.push_back(g);
    std::vector<int64_t> off;
    std::vector<int32_t> ranks;
    torch::Tensor r = group_rewards(rm, data, groups, ids, max_len, device, &off, &ranks);
    RankingLoss l = kwise_ranking_loss(r, off, ranks);
    if (rewards) all.narrow(0, data.group_offsets[groups.front()], r.size(0)).copy_(r.cpu());
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
  if (was_training) rm->train();
  return e;
}

double mean_reward_on(ScalarModel& rm, const SftData& data, const SpecialIds& ids, int64_t max_len,
                      int64_t micro_batch, int64_t max_rows, Communicator& comm,
                      const torch::Device& device) {
  torch::NoGradGuard ng;
  const bool was_training = rm->is_training();
  rm->eval();
  const int64_t n = max_rows > 0 ? std::min(max_rows, data.size()) : data.size();
  double total = 0;
  for (int64_t s = comm.rank() * micro_batch; s < n; s += micro_batch * comm.world_size()) {
    std::vector<PromptResponse> rows;
    for (int64_t i = s; i < std::min(n, s + micro_batch); ++i)
      rows.push_back({data.prompt.row_data(i), data.prompt.row_len(i), data.response.row_data(i),
                      data.response.row_len(i)});
    SeqBatch b = build_seq_batch(rows, ids, max_len);
    total += rm->score_last(b.tokens.to(device), b.mask.to(device)).sum().item<double>();
  }
  if (was_training) rm->train();
  return comm.all_reduce_scalar(total) / std::max<int64_t>(1, n);
}

int run_rm(int argc, char** argv) {
  RunContext ctx = start_run(Stage::RM, argc, argv);
  const Config& cfg = ctx.cfg;
  Communicator& comm = *ctx.comm;
  const torch::Device dev = ctx.device;

  ModelSetup ms = resolve_model(cfg, cfg.init);
  const SpecialIds ids = special_ids(ms.tok);
  RLHF_CHECK(!cfg.data.train.empty(), "data.train is not set: give a ranked dataset from rlhf_prep");
  RankedData train = RankedData::load(cfg.data.train, ms.tok.identity);
  RankedData eval;
  if (!cfg.data.eval.empty()) eval = RankedData::load(cfg.data.eval, ms.tok.identity);
  const int64_t max_len = seq_len_limit(cfg, ms.cfg);

  torch::manual_seed(cfg.run.seed);
  ScalarModel rm(ms.cfg);
  if (!ms.init_path.empty()) {
    // Trunk from the SFT policy; the scalar head starts fresh (the LM head is not used).
    ModelFile f = read_model_h5(ms.init_path);
    if (f.kind == "scalar") load_parameters(*rm, f);
    else load_parameters(*rm, f, {"score.weight", "score.bias"}, /*ignore_unexpected=*/true);
  }
  rm->to(dev);
  // The ranking loss depends only on reward differences. Parameters that shift every reward by
  // the same amount — score.bias, and the final LayerNorm's bias (the head is linear in its
  // output) — get an exactly-zero gradient; left trainable, Adam would amplify round-off into
  // lr-sized steps that differ with the rank count. They stay fixed; the bias fit sets the shift.
  for (auto& kv : rm->named_parameters(true))
    if (kv.key() == "score.bias" || kv.key() == "transformer.ln_f.bias") kv.value().set_requires_grad(false);
  SingleModelLoop loop(ctx, *rm, ms,
                       {"model.h5", rm.get(), "scalar", {{"reward_model", true}, {"bias_fitted", false}}},
                       "rm", train.size());
  const int64_t accum = loop.accum();
  loop.metrics().message(fmt::format("# rm: {} params, {} train groups ({} responses), {} ranks x {} groups x {} accum",
                                     loop.n_params(), train.size(), train.responses.size(), comm.world_size(),
                                     cfg.train.micro_batch_size, accum));
  auto evaluate = [&]() -> nlohmann::json {
    if (eval.size() == 0) return nlohmann::json::object();
    RankEval e = evaluate_ranked(rm, eval, ids, max_len, cfg.train.micro_batch_size, 0, comm, dev);
    return {{"eval_loss", e.loss}, {"eval_accuracy", e.accuracy()}, {"eval_margin", e.mean_margin()},
            {"eval_pairs", e.pairs}};
  };

  rm->train();
  const int exit_code = loop.run([&]() -> StepStats {
    std::vector<int64_t> idx = loop.sampler().next(cfg.train.global_batch_size);  // prompt groups
    // Loss = mean over the global batch's groups: each group's loss / G_global (x world: the
    // gradient all-reduce averages over ranks). Every group has >= 1 pair (prep guarantees).
    const double global_groups = static_cast<double>(cfg.train.global_batch_size);
    double loss_sum = 0, margin_sum = 0;
    int64_t pairs = 0, correct = 0, forward_rows = 0, tokens = 0;
    for (int64_t a = 0; a < accum; ++a) {
      std::vector<int64_t> groups(idx.begin() + a * cfg.train.micro_batch_size,
                                  idx.begin() + (a + 1) * cfg.train.micro_batch_size);
      std::vector<int64_t> off;
      std::vector<int32_t> ranks;
      torch::Tensor r = group_rewards(rm, train, groups, ids, max_len, dev, &off, &ranks);  // [R]
      RankingLoss l = kwise_ranking_loss(r, off, ranks);
      (l.loss * (static_cast<double>(l.groups) * comm.world_size() / global_groups)).backward();
      loss_sum += l.loss.item<double>() * l.groups;
      pairs += l.pairs;
      correct += l.correct;
      margin_sum += l.margin_sum;
      forward_rows += r.size(0);  // each response exactly once per step
      for (int64_t g : groups)
        for (int64_t q = train.group_offsets[g]; q < train.group_offsets[g + 1]; ++q)
          tokens += train.prompt.row_len(g) + train.responses.row_len(q) + 2;
    }
    StepStats st;
    st.loss = comm.all_reduce_scalar(loss_sum) / global_groups;
    st.tokens = static_cast<double>(tokens);
    const double all_pairs = comm.all_reduce_scalar(static_cast<double>(pairs));
    st.fields = {{"accuracy", comm.all_reduce_scalar(static_cast<double>(correct)) / std::max(1.0, all_pairs)},
                 {"margin", comm.all_reduce_scalar(margin_sum) / std::max(1.0, all_pairs)},
                 {"pairs", all_pairs},
                 {"forward_rows", comm.all_reduce_scalar(static_cast<double>(forward_rows))}};
    return st;
  }, evaluate);
  // Fit the bias: shift score.bias so the demonstrations' mean reward is 0 (only once training is
  // complete; an interrupted run keeps its raw head so resume stays exact).
  nlohmann::json& extra = loop.model_extra();
  if (exit_code == 0 && loop.complete() && !cfg.data.bias_data.empty()) {
    SftData demos = SftData::load(cfg.data.bias_data, ms.tok.identity);
    const double mean = mean_reward_on(rm, demos, ids, max_len, cfg.train.micro_batch_size, 2048, comm, dev);
    {
      torch::NoGradGuard ng;
      rm->score->bias.sub_(mean);
    }
    const double after = mean_reward_on(rm, demos, ids, max_len, cfg.train.micro_batch_size, 2048, comm, dev);
    extra["bias_fitted"] = true;
    extra["bias_shift"] = mean;
    extra["bias_data"] = cfg.data.bias_data;
    extra["demo_mean_reward_after_fit"] = after;
    loop.metrics().message(fmt::format("# rm bias fit on {}: mean reward {:.4f} -> {:.2e}", cfg.data.bias_data, mean, after));
  }
  nlohmann::json summary = loop.finish("rm", {{"bias", extra}}, evaluate);
  loop.metrics().message(fmt::format(
      "# rm done: step {}, loss {:.4f}{}, checkpoint {}", loop.step(),
      summary["final_loss"].get<double>(),
      summary.contains("eval_accuracy")
          ? fmt::format(", held-out accuracy {:.3f}", summary["eval_accuracy"].get<double>())
          : std::string(),
      summary["checkpoint"].get<std::string>()));
  return exit_code;
}

}  // namespace rlhf
