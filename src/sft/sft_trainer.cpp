#include "sft/sft_trainer.h"

#include "sft/sft_config.h"

#include <algorithm>
#include <cmath>

#include "common/train/dry_run.h"
#include "common/train/run.h"
#include "common/train/train_common.h"
#include "common/train/log.h"
#include "common/train/loop.h"
#include "common/train/samples.h"
#include "common/model/generate.h"
#include "common/model/lm_loss.h"

namespace rlhf {

namespace {

// What SFT trains and evaluates on. data.train is either an SFT dataset (loss on response tokens)
// or a token stream from `rlhf_prep pretrain` / the synth corpus: then this stage is (continued)
// pretraining, an item being a window of max_len tokens at a multiple of max_len, every token a
// target.
struct SftInputs {
  bool stream = false;
  SftData train, eval;
  PretrainData train_stream, eval_stream;
  int64_t max_len = 0;
  int64_t n_items = 0;       // training rows, or windows of a stream
  int64_t eval_windows = 0;  // held-out windows evaluated (streams)
};

SftInputs load_sft_inputs(const Config& cfg, const ModelSetup& ms) {
  RLHF_CHECK(!cfg.data.train.empty(), "data.train is not set: give an SFT dataset from rlhf_prep");
  SftInputs in;
  in.stream = from_key("data.train", [&] { return load_dataset_meta(cfg.data.train); }).kind == DataKind::Pretrain;
  in.max_len = seq_len_limit(cfg, ms.cfg);
  if (in.stream) {
    in.train_stream = from_key("data.train", [&] { return PretrainData::load(cfg.data.train, ms.tok.identity); });
    if (!cfg.data.eval.empty())
      in.eval_stream = from_key("data.eval", [&] { return PretrainData::load(cfg.data.eval, ms.tok.identity); });
  } else {
    in.train = from_key("data.train", [&] { return SftData::load(cfg.data.train, ms.tok.identity); });
    if (!cfg.data.eval.empty())
      in.eval = from_key("data.eval", [&] { return SftData::load(cfg.data.eval, ms.tok.identity); });
  }
  in.n_items = in.stream ? in.train_stream.size() / in.max_len : in.train.size();
  RLHF_CHECK(in.n_items > 0, "{}: no training {} (a stream needs at least max_seq_len = {} tokens)",
             cfg.data.train, in.stream ? "windows" : "rows", in.max_len);
  if (in.stream)
    in.eval_windows = std::min<int64_t>(in.eval_stream.size() / in.max_len,
                                        cfg.train.eval_batches * cfg.train.micro_batch_size);
  return in;
}

// train.max_tokens_per_micro_batch: the rows cut into as many micro-batches as the rank that
// needs most (so that every rank runs the same number of backward passes), each row into the
// micro-batch with the fewest tokens so far, longest rows first.
std::vector<std::vector<PromptResponse>> token_budget_bins(const SftInputs& in, const std::vector<int64_t>& idx,
                                                           const SpecialIds& ids, int64_t budget,
                                                           Communicator& comm) {
  std::vector<int64_t> len;
  int64_t total = 0;
  for (int64_t i : idx) total += len.emplace_back(framed_length(in.train.row(i), ids, in.max_len));
  const double need = std::ceil(static_cast<double>(total) / static_cast<double>(budget));
  const int64_t m = std::min<int64_t>(static_cast<int64_t>(idx.size()),
                                      static_cast<int64_t>(comm.all_reduce_scalar(need, ReduceOp::Max)));
  std::vector<size_t> order(idx.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return len[a] > len[b]; });
  std::vector<std::vector<PromptResponse>> bins(m);
  std::vector<int64_t> tokens(m, 0);
  for (size_t o : order) {
    const size_t k = static_cast<size_t>(std::min_element(tokens.begin(), tokens.end()) - tokens.begin());
    bins[k].push_back(in.train.row(idx[o]));
    tokens[k] += len[o];
  }
  return bins;
}

// This rank's share `idx` of a step cut into micro-batches: `accum` of `micro` rows, or with
// train.packing and train.max_tokens_per_micro_batch by tokens. Rows are grouped by length first
// (each is padded to the longest of its micro-batch): the loss is a token-weighted sum over the
// global batch, so regrouping changes nothing but round-off, and cuts the padding by about a
// third on the embedded task. train.packing: each micro-batch packed, no padding at all (token
// streams are full windows already).
std::vector<SeqBatch> sft_micro_batches(const SftInputs& in, std::vector<int64_t> idx, const SpecialIds& ids,
                                        int64_t accum, int64_t micro, const TrainSection& tc,
                                        Communicator& comm) {
  if (!in.stream)
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) {
      const PromptResponse ra = in.train.row(a), rb = in.train.row(b);
      return ra.prompt_len + ra.response_len < rb.prompt_len + rb.response_len;
    });
  std::vector<SeqBatch> out;
  if (!in.stream && tc.packing && tc.max_tokens_per_micro_batch > 0) {
    for (const auto& rows : token_budget_bins(in, idx, ids, tc.max_tokens_per_micro_batch, comm))
      out.push_back(pack_rows(build_seq_batch(rows, ids, in.max_len)));
    return out;
  }
  for (int64_t a = 0; a < accum; ++a) {
    if (in.stream) {
      std::vector<int64_t> starts;
      for (int64_t j = a * micro; j < (a + 1) * micro; ++j) starts.push_back(idx[j] * in.max_len);
      out.push_back(build_stream_batch(in.train_stream.tokens, starts, in.max_len));
    } else {
      std::vector<PromptResponse> rows;
      for (int64_t j = a * micro; j < (a + 1) * micro; ++j) rows.push_back(in.train.row(idx[j]));
      SeqBatch b = build_seq_batch(rows, ids, in.max_len);
      out.push_back(tc.packing ? pack_rows(b) : std::move(b));
    }
  }
  return out;
}

// Held-out rows written to run.dir/samples.jsonl at each evaluation.
constexpr int64_t kEvalExamples = 3;

// The first kEvalExamples rows of the held-out set: prompt, reference response and the model's
// greedy continuation (up to the reference's length + 8 tokens, within max_len). Rank 0 only: no
// collectives, and greedy decoding draws no random numbers (resume stays exact).
void write_sft_examples(CausalLM& model, const SftData& eval, const Tokenizer& tok, const SpecialIds& ids,
                        int64_t max_len, int64_t step, SamplesLog& log, const torch::Device& dev) {
  torch::NoGradGuard no_grad;
  EvalMode eval_mode(*model);
  for (int64_t i = 0; i < std::min<int64_t>(kEvalExamples, eval.size()); ++i) {
    const PromptResponse r = eval.row(i);
    std::vector<int32_t> prompt(r.prompt, r.prompt + r.prompt_len);
    const std::vector<int32_t> reference(r.response, r.response + r.response_len);
    std::vector<int32_t> framed = prompt;
    if (ids.bos >= 0) framed.insert(framed.begin(), static_cast<int32_t>(ids.bos));
    const int64_t room = max_len - static_cast<int64_t>(framed.size());
    if (room < 1) continue;  // a prompt that fills the context: nothing to generate
    auto [toks, mask] = left_pad({framed}, ids.pad);
    const SamplingConfig sc = sampling_config(std::min<int64_t>(room, r.response_len + 8), 0.0, 0, 1.0, ids);
    GenerateOutput out = generate(model, toks.to(dev), mask.to(dev), sc, uint64_t{0});
    const torch::Tensor gen = out.tokens[0].slice(0, out.prompt_len).to(torch::kCPU);
    const torch::Tensor keep = out.response_mask[0].to(torch::kCPU) & stop_mask(gen, sc).logical_not();
    std::vector<int32_t> response;
    for (int64_t t = 0; t < gen.size(0) && keep[t].item<bool>(); ++t)
      response.push_back(static_cast<int32_t>(gen[t].item<int64_t>()));
    log.write({{"step", step}, {"stage", "sft"}, {"row", i}, {"prompt", tok.decode(prompt)},
               {"reference", tok.decode(reference)}, {"response", tok.decode(response)},
               {"length", static_cast<int64_t>(response.size())},
               {"eos", out.response_mask[0].sum().item<int64_t>() > static_cast<int64_t>(response.size())}});
  }
}

}  // namespace

int run_sft(int argc, char** argv) {
  return run_stage_cli(sft_stage(), argc, argv, [](const RunRequest& r) { return run_sft(r); });
}

int run_sft(const RunRequest& req) {
  RunContext ctx = start_run(req);
  const Config& cfg = ctx.cfg;
  Communicator& comm = *ctx.comm;
  const torch::Device dev = ctx.device;

  ModelSetup ms = resolve_init_model(cfg);
  const SftInputs in = load_sft_inputs(cfg, ms);
  if (in.stream) {
    accept_dataset(ms, in.train_stream.meta);
    if (in.eval_stream.size() > 0) accept_dataset(ms, in.eval_stream.meta);
  } else {
    accept_dataset(ms, in.train.meta);
    if (in.eval.size() > 0) accept_dataset(ms, in.eval.meta);
  }
  const SpecialIds ids = for_rows(special_ids(ms.tok), in.train.meta);
  const int64_t max_len = in.max_len;

  torch::manual_seed(cfg.run.seed);
  CausalLM model(ms.cfg);
  ModelFile init;
  if (!ms.init_path.empty()) {
    init = read_model_h5(ms.init_path);
    load_parameters(*model, init);
  }
  model->to(dev);
  attach_configured_lora(*model, cfg.lora, ms.init_path.empty() ? nullptr : &init, "the SFT model");
  init.tensors.clear();
  TrainLoop loop(ctx, ms, {{"model.h5", model.get(), "causal_lm", {}}}, {{model.get(), "policy"}}, in.n_items);
  const int64_t accum = loop.accum();
  RLHF_CHECK(cfg.train.max_tokens_per_micro_batch == 0 || in.stream ||
                 (cfg.train.packing && cfg.train.max_tokens_per_micro_batch >= max_len),
             "train.max_tokens_per_micro_batch = {} needs train.packing: true and must hold the longest "
             "row ({} tokens, the data's max_len); set it >= {} or 0 (micro-batches by rows)",
             cfg.train.max_tokens_per_micro_batch, max_len, max_len);
  loop.metrics().message(fmt::format("# sft: {} params, {} train {}, {} ranks x {} micro x {} accum",
                                     loop.n_params(), in.n_items, in.stream ? "windows (pretraining)" : "rows",
                                     comm.world_size(), cfg.train.micro_batch_size, accum));
  SamplesLog samples(cfg.run.dir, comm.is_root(), loop.resumed());
  int64_t examples_step = -1;  // finish() evaluates again at the last step: one set per step
  auto evaluate = [&]() -> nlohmann::json {
    GatheredParams full(loop.optimizer(0));  // ZeRO stage 3: rank 0 generates examples alone
    if (!in.stream && comm.is_root() && examples_step != loop.step()) {
      write_sft_examples(model, in.eval, *ms.tokenizer, ids, max_len, loop.step(), samples, dev);
      examples_step = loop.step();
    }
    if (in.stream) {
      if (in.eval_windows == 0) return nlohmann::json::object();
      const double loss = eval_stream_loss(model, in.eval_stream, max_len, in.eval_windows, comm, dev);
      return {{"eval_loss", loss}, {"eval_ppl", std::exp(loss)}, {"eval_tokens", in.eval_windows * (max_len - 1)}};
    }
    if (in.eval.size() == 0) return nlohmann::json::object();
    const int64_t rows = cfg.train.eval_batches * cfg.train.micro_batch_size * comm.world_size();
    auto [loss, tokens] = eval_lm_loss(model, in.eval, ids, max_len, cfg.train.micro_batch_size, rows, comm, dev);
    return {{"eval_loss", loss}, {"eval_ppl", std::exp(loss)}, {"eval_tokens", tokens}};
  };

  model->train();
  const int exit_code = loop.run([&]() -> StepStats {
    // 1. this rank's share of the global batch, cut into micro-batches
    std::vector<SeqBatch> micro = sft_micro_batches(in, loop.sampler().next(cfg.train.global_batch_size),
                                                    ids, accum, cfg.train.micro_batch_size, cfg.train, comm);
    int64_t local_targets = 0;
    for (const auto& b : micro) local_targets += b.target_tokens;
    // 2. token-weighted mean over the GLOBAL batch: each micro-batch contributes sum_nll / N_global,
    //    times world size because the all-reduce averages gradients over ranks.
    const double global_targets = std::max(1.0, comm.all_reduce_scalar(static_cast<double>(local_targets)));
    double nll_sum = 0;
    int64_t tokens_seen = 0;
    for (auto& b : micro) {
      LmLoss l = batch_lm_loss(model, b, dev);
      (l.sum_nll * (comm.world_size() / global_targets)).backward();
      loop.optimizer(0).after_backward();  // ZeRO stage >= 2: reduce-scatter, free the gradients
      nll_sum += l.sum_nll.item<double>();
      tokens_seen += b.attention_mask.sum().item<int64_t>();
    }
    // 3. the loop: all-reduce -> clip -> skip on non-finite -> step
    StepStats st;
    st.loss = comm.all_reduce_scalar(nll_sum) / global_targets;
    st.tokens = static_cast<double>(tokens_seen);
    st.fields = {{"target_tokens", global_targets}};
    return st;
  }, evaluate);
  nlohmann::json summary = loop.finish("sft", nlohmann::json::object(), evaluate);
  loop.metrics().message(fmt::format(
      "# sft done: step {}, loss {:.4f}{}, checkpoint {}", loop.step(),
      summary["final_loss"].get<double>(),
      summary.contains("eval_ppl")
          ? fmt::format(", held-out ppl {:.3f}", summary["eval_ppl"].get<double>())
          : std::string(),
      summary["checkpoint"].get<std::string>()));
  return exit_code;
}

}  // namespace rlhf
