#include "rm/rm_trainer.h"

#include "rm/rm_config.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/model/generate.h"
#include "common/train/dry_run.h"
#include "common/train/run.h"
#include "common/train/train_common.h"
#include "common/train/log.h"
#include "common/train/loop.h"
#include "common/train/samples.h"
#include "rm/rm_eval.h"
#include "rm/rm_loss.h"

namespace rlhf {

namespace {

// The reward model: the SFT trunk (init) with a fresh scalar head, or a scalar checkpoint whole.
// The ranking loss depends only on reward differences. Parameters that shift every reward by the
// same amount — score.bias, and the final LayerNorm's bias (the head is linear in its output) —
// get an exactly-zero gradient; left trainable, Adam would amplify round-off into lr-sized steps
// that differ with the rank count. They stay fixed; the bias fit sets the shift.
ScalarModel build_reward_model(const ModelSetup& ms, const Config& cfg, const torch::Device& dev) {
  torch::manual_seed(cfg.run.seed);
  ScalarModel rm(ms.cfg);
  ModelFile f;
  if (!ms.init_path.empty()) {
    f = read_model_h5(ms.init_path);
    if (f.kind == "scalar") load_parameters(*rm, f);
    else load_parameters(*rm, f, {"score.weight", "score.bias"}, /*ignore_unexpected=*/true);
  }
  rm->to(dev);
  attach_configured_lora(*rm, cfg.lora, ms.init_path.empty() ? nullptr : &f, "the reward model");
  for (auto& kv : rm->named_parameters(true))
    if (kv.key() == "score.bias" || kv.key() == "transformer.ln_f.bias") kv.value().set_requires_grad(false);
  return rm;
}

// The bias fit: shift score.bias so the demonstrations' mean reward is 0. Fills `extra` (the
// model file's metadata) with the shift and the mean after the fit. Collective.
void fit_reward_bias(ScalarModel& rm, const SftData& demos, const std::string& path,
                     const SpecialIds& ids, int64_t max_len, int64_t micro, Communicator& comm,
                     const torch::Device& dev, nlohmann::json& extra) {
  const double mean = mean_reward_on(rm, demos, ids, max_len, micro, 2048, comm, dev);
  {
    torch::NoGradGuard ng;
    rm->score->bias.sub_(mean);
  }
  const double after = mean_reward_on(rm, demos, ids, max_len, micro, 2048, comm, dev);
  extra["bias_fitted"] = true;
  extra["bias_shift"] = mean;
  extra["bias_data"] = path;
  extra["demo_mean_reward_after_fit"] = after;
}

// One RM step on this rank's prompt groups idx, in `accum` micro-batches of
// train.micro_batch_size groups: forward (each response once), K-wise loss, backward.
StepStats rm_step(ScalarModel& rm, const RankedData& train, const std::vector<int64_t>& idx,
                  int64_t accum, const Config& cfg, const SpecialIds& ids, int64_t max_len,
                  PairNormalizer norm, Communicator& comm, const torch::Device& dev, AdamW& opt) {
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
    const int64_t rows_before = rm->scored_rows;
    torch::Tensor r = group_rewards(rm, train, groups, ids, max_len, dev, &off, &ranks);  // [R]
    forward_rows += rm->scored_rows - rows_before;  // counted by the model, not from r
    RankingLoss l = kwise_ranking_loss(r, off, ranks, norm);
    (l.loss * (static_cast<double>(l.groups) * comm.world_size() / global_groups)).backward();
    opt.after_backward();  // ZeRO stage >= 2: reduce-scatter, free the gradients
    loss_sum += l.loss.item<double>() * l.groups;
    pairs += l.pairs;
    correct += l.correct;
    margin_sum += l.margin_sum;
    for (int64_t g : groups)
      for (int64_t q = train.first_response(g); q < train.end_response(g); ++q)
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
}

}  // namespace

namespace {
// Held-out groups written to run.dir/samples.jsonl at each evaluation.
constexpr int64_t kEvalExampleGroups = 2;

// The first kEvalExampleGroups held-out groups: the prompt and each response with its labelled
// rank and the model's reward. Rank 0 only (group_rewards has no collectives).
void write_rm_examples(ScalarModel& rm, const RankedData& eval, const Tokenizer& tok, const SpecialIds& ids,
                       int64_t max_len, int64_t step, SamplesLog& log, const torch::Device& dev) {
  torch::NoGradGuard no_grad;
  EvalMode eval_mode(*rm);
  for (int64_t g = 0; g < std::min<int64_t>(kEvalExampleGroups, eval.size()); ++g) {
    std::vector<int64_t> offsets;
    std::vector<int32_t> ranks;
    const torch::Tensor r = group_rewards(rm, eval, {g}, ids, max_len, dev, &offsets, &ranks).to(torch::kCPU);
    const std::vector<PromptResponse> rows = eval.group_rows(g);
    nlohmann::json responses = nlohmann::json::array();
    for (size_t k = 0; k < rows.size(); ++k)
      responses.push_back({{"text", tok.decode(std::vector<int32_t>(rows[k].response, rows[k].response + rows[k].response_len))},
                           {"rank", ranks.at(k)}, {"reward", r[static_cast<int64_t>(k)].item<double>()}});
    log.write({{"step", step}, {"stage", "rm"}, {"group", g},
               {"prompt", tok.decode(std::vector<int32_t>(rows[0].prompt, rows[0].prompt + rows[0].prompt_len))},
               {"responses", responses}});
  }
}
}  // namespace

int run_rm(int argc, char** argv) {
  return run_stage_cli(rm_stage(), argc, argv, [](const RunRequest& r) { return run_rm(r); });
}

int run_rm(const RunRequest& req) {
  RunContext ctx = start_run(req);
  const Config& cfg = ctx.cfg;
  Communicator& comm = *ctx.comm;
  const torch::Device dev = ctx.device;

  ModelSetup ms = resolve_init_model(cfg);
  RLHF_CHECK(!cfg.data.train.empty(), "data.train is not set: give a ranked dataset from rlhf_prep");
  RankedData train = from_key("data.train", [&] { return RankedData::load(cfg.data.train, ms.tok.identity); });
  accept_dataset(ms, train.meta);
  RankedData eval;
  if (!cfg.data.eval.empty())
    eval = from_key("data.eval", [&] { return RankedData::load(cfg.data.eval, ms.tok.identity); });
  if (!cfg.data.eval.empty()) accept_dataset(ms, eval.meta);
  // The demonstrations for the bias fit are read now, so a bad path fails before training.
  SftData demos;
  if (!rm_section(cfg).bias_data.empty())
    demos = from_key("data.bias_data", [&] { return SftData::load(rm_section(cfg).bias_data, ms.tok.identity); });
  if (!rm_section(cfg).bias_data.empty()) accept_dataset(ms, demos.meta);
  const SpecialIds ids = for_rows(special_ids(ms.tok), train.meta);
  const int64_t max_len = seq_len_limit(cfg, ms.cfg);

  ScalarModel rm = build_reward_model(ms, cfg, dev);
  const PairNormalizer norm = rm_section(cfg).pair_normalizer;
  TrainLoop loop(ctx, ms, {{"model.h5", rm.get(), "scalar", {{"reward_model", true}, {"bias_fitted", false}}}},
                 {{rm.get(), "rm"}}, train.size());
  const int64_t accum = loop.accum();
  loop.metrics().message(fmt::format("# rm: {} params, {} train groups ({} responses), {} ranks x {} groups x {} accum",
                                     loop.n_params(), train.size(), train.responses.size(), comm.world_size(),
                                     cfg.train.micro_batch_size, accum));
  SamplesLog samples(cfg.run.dir, comm.is_root(), loop.resumed());
  int64_t examples_step = -1;  // finish() evaluates again at the last step: one set per step
  auto evaluate = [&]() -> nlohmann::json {
    if (eval.size() == 0) return nlohmann::json::object();
    GatheredParams full(loop.optimizer(0));  // ZeRO stage 3: rank 0 scores examples alone
    if (comm.is_root() && examples_step != loop.step()) {
      write_rm_examples(rm, eval, *ms.tokenizer, ids, max_len, loop.step(), samples, dev);
      examples_step = loop.step();
    }
    RankEval e = evaluate_ranked(rm, eval, ids, max_len, cfg.train.micro_batch_size, 0, comm, dev,
                                 nullptr, norm);
    return {{"eval_loss", e.loss}, {"eval_accuracy", e.accuracy()}, {"eval_margin", e.mean_margin()},
            {"eval_pairs", e.pairs}};
  };

  rm->train();
  const int exit_code = loop.run([&]() -> StepStats {
    // ZeRO stage 3: the prompt-prefix KV cache (group_rewards) runs the blocks without
    // checkpointing, and ranks may run different numbers of passes: hold the whole model for
    // the step's forward and backward (sharded again before the update).
    GatheredParams full(loop.optimizer(0));
    return rm_step(rm, train, loop.sampler().next(cfg.train.global_batch_size), accum, cfg, ids,
                   max_len, norm, comm, dev, loop.optimizer(0));
  }, evaluate);
  // The bias fit runs only once training is complete: an interrupted run keeps its raw head so
  // resume stays exact.
  nlohmann::json& extra = loop.model_extra();
  if (exit_code == 0 && loop.complete() && demos.size() > 0) {
    loop.optimizer(0).gather_full();  // ZeRO stage 3: the fitted bias is written back to the shards
    fit_reward_bias(rm, demos, rm_section(cfg).bias_data, ids, max_len, cfg.train.micro_batch_size, comm, dev, extra);
    loop.optimizer(0).release_full();
    loop.metrics().message(fmt::format("# rm bias fit on {}: mean reward {:.4f} -> {:.2e}", rm_section(cfg).bias_data,
                                       extra["bias_shift"].get<double>(),
                                       extra["demo_mean_reward_after_fit"].get<double>()));
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
