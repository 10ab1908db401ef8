#include "sft/sft_trainer.h"

#include <algorithm>
#include <cmath>

#include "common/run.h"
#include "common/train_common.h"
#include "common/train_loop.h"
#include "sft/sft_loss.h"

namespace rlhf {

int run_sft(int argc, char** argv) {
  RunContext ctx = start_run(Stage::SFT, argc, argv);
  const Config& cfg = ctx.cfg;
  Communicator& comm = *ctx.comm;
  const torch::Device dev = ctx.device;

  ModelSetup ms = resolve_model(cfg, cfg.init);
  const SpecialIds ids = special_ids(ms.tok);
  RLHF_CHECK(!cfg.data.train.empty(), "data.train is not set: give an SFT dataset from rlhf_prep");
  // data.train is either an SFT dataset (loss on response tokens) or a token stream from
  // `rlhf_prep pretrain` / the synth corpus: then this stage is (continued) pretraining, a batch
  // being windows of max_len tokens at multiples of max_len, every token a target.
  const bool stream = load_dataset_meta(cfg.data.train).kind == DataKind::Pretrain;
  const int64_t max_len = seq_len_limit(cfg, ms.cfg);
  SftData train, eval;
  PretrainData train_stream, eval_stream;
  if (stream) {
    train_stream = PretrainData::load(cfg.data.train, ms.tok.identity);
    if (!cfg.data.eval.empty()) eval_stream = PretrainData::load(cfg.data.eval, ms.tok.identity);
  } else {
    train = SftData::load(cfg.data.train, ms.tok.identity);
    if (!cfg.data.eval.empty()) eval = SftData::load(cfg.data.eval, ms.tok.identity);
  }
  const int64_t n_items = stream ? train_stream.size() / max_len : train.size();  // rows or windows
  RLHF_CHECK(n_items > 0, "{}: no training {} (a stream needs at least max_seq_len = {} tokens)",
             cfg.data.train, stream ? "windows" : "rows", max_len);
  const int64_t eval_windows = stream ? std::min<int64_t>(eval_stream.size() / max_len,
                                                          cfg.train.eval_batches * cfg.train.micro_batch_size)
                                      : 0;

  torch::manual_seed(cfg.run.seed);
  CausalLM model(ms.cfg);
  if (!ms.init_path.empty()) load_parameters(*model, read_model_h5(ms.init_path));
  model->to(dev);
  SingleModelLoop loop(ctx, *model, ms, {"model.h5", model.get(), "causal_lm", {}}, "policy", n_items);
  const int64_t accum = loop.accum();
  loop.metrics().message(fmt::format("# sft: {} params, {} train {}, {} ranks x {} micro x {} accum",
                                     loop.n_params(), n_items, stream ? "windows (pretraining)" : "rows",
                                     comm.world_size(), cfg.train.micro_batch_size, accum));
  auto evaluate = [&]() -> nlohmann::json {
    if (stream) {
      if (eval_windows == 0) return nlohmann::json::object();
      const double loss = eval_stream_loss(model, eval_stream, max_len, eval_windows, comm, dev);
      return {{"eval_loss", loss}, {"eval_ppl", std::exp(loss)}, {"eval_tokens", eval_windows * (max_len - 1)}};
    }
    if (eval.size() == 0) return nlohmann::json::object();
    const int64_t rows = cfg.train.eval_batches * cfg.train.micro_batch_size * comm.world_size();
    auto [loss, tokens] = eval_lm_loss(model, eval, ids, max_len, cfg.train.micro_batch_size, rows, comm, dev);
    return {{"eval_loss", loss}, {"eval_ppl", std::exp(loss)}, {"eval_tokens", tokens}};
  };

  model->train();
  const int exit_code = loop.run([&]() -> StepStats {
    // 1. this rank's share of the global batch, cut into micro-batches
    std::vector<int64_t> idx = loop.sampler().next(cfg.train.global_batch_size);
    if (!stream) {
      // Micro-batches of similar lengths (rows are padded to the longest of their micro-batch):
      // the loss is a token-weighted sum over the global batch, so regrouping the rows changes
      // nothing but round-off, and cuts the padding by about a third on the embedded task.
      std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) {
        return train.prompt.row_len(a) + train.response.row_len(a) < train.prompt.row_len(b) + train.response.row_len(b);
      });
    }
    std::vector<SeqBatch> micro;
    int64_t local_targets = 0;
    for (int64_t a = 0; a < accum; ++a) {
      if (stream) {
        std::vector<int64_t> starts;
        for (int64_t j = a * cfg.train.micro_batch_size; j < (a + 1) * cfg.train.micro_batch_size; ++j)
          starts.push_back(idx[j] * max_len);
        micro.push_back(build_stream_batch(train_stream.tokens, starts, max_len));
        local_targets += micro.back().target_tokens;
        continue;
      }
      std::vector<PromptResponse> rows;
      for (int64_t j = a * cfg.train.micro_batch_size; j < (a + 1) * cfg.train.micro_batch_size; ++j) {
        int64_t i = idx[j];
        rows.push_back({train.prompt.row_data(i), train.prompt.row_len(i), train.response.row_data(i),
                        train.response.row_len(i)});
      }
      micro.push_back(build_seq_batch(rows, ids, max_len));
      local_targets += micro.back().target_tokens;
    }
    // 2. token-weighted mean over the GLOBAL batch: each micro-batch contributes sum_nll / N_global,
    //    times world size because the all-reduce averages gradients over ranks.
    const double global_targets = std::max(1.0, comm.all_reduce_scalar(static_cast<double>(local_targets)));
    double nll_sum = 0;
    int64_t tokens_seen = 0;
    for (auto& b : micro) {
      LmLoss l = batch_lm_loss(model, b, dev);
      (l.sum_nll * (comm.world_size() / global_targets)).backward();
      nll_sum += l.sum_nll.item<double>();
      tokens_seen += b.mask.sum().item<int64_t>();
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
