#include "sft/sft_trainer.h"

#include <cmath>

#include "common/run.h"
#include "common/train_common.h"
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
  SftData train = SftData::load(cfg.data.train, ms.tok.identity);
  SftData eval;
  if (!cfg.data.eval.empty()) eval = SftData::load(cfg.data.eval, ms.tok.identity);
  const int64_t max_len = seq_len_limit(cfg, ms.cfg);

  torch::manual_seed(cfg.run.seed);
  CausalLM model(ms.cfg);
  if (!ms.init_path.empty()) load_parameters(*model, read_model_h5(ms.init_path));
  model->to(dev);
  auto params = named_params(*model);
  int64_t n_params = 0;
  for (auto& p : params) n_params += p.param.numel();
  check_consistency(comm, ctx.config_text, n_params);
  broadcast_parameters(comm, tensors_of(params));
  AdamW opt(params, cfg.train.beta1, cfg.train.beta2, cfg.train.adam_eps, cfg.train.weight_decay);
  ShardedSampler sampler(train.size(), cfg.run.seed, comm.rank(), comm.world_size());
  const int64_t accum = accumulation_steps(cfg.train.global_batch_size, cfg.train.micro_batch_size,
                                           comm.world_size());
  // Each rank gets a distinct dropout stream.
  torch::manual_seed(cfg.run.seed * 1000003ULL + comm.rank());

  int64_t step = 0, skipped_total = 0;
  const std::vector<CkptModel> ck_models{{"model.h5", model.get(), "causal_lm", {}}};
  const std::vector<CkptOptim> ck_optims{{"policy", &opt}};
  if (!ctx.resume_dir.empty()) {
    auto st = load_training_checkpoint(ctx.resume_dir, comm, ck_models, ck_optims);
    step = st.at("step").get<int64_t>();
    skipped_total = st.value("skipped_steps", int64_t{0});
    sampler.set_cursor(cursor_from_json(st.at("cursor")));
  }
  MetricsLogger metrics(cfg.run.dir, comm.is_root(), cfg.train.max_steps, cfg.run.log_every,
                        !ctx.resume_dir.empty());
  metrics.message(fmt::format("# sft: {} params, {} train rows, {} ranks x {} micro x {} accum",
                              n_params, train.size(), comm.world_size(), cfg.train.micro_batch_size, accum));

  auto save = [&]() {
    return save_training_checkpoint(*ctx.ckpt, comm, step, ck_models, ck_optims, ms.cfg, ms.tok,
                                    {{"cursor", cursor_json(sampler.cursor())},
                                     {"skipped_steps", skipped_total}},
                                    ctx.config_text);
  };
  auto evaluate = [&]() -> nlohmann::json {
    if (eval.size() == 0) return nlohmann::json::object();
    const int64_t rows = cfg.train.eval_batches * cfg.train.micro_batch_size * comm.world_size();
    auto [loss, tokens] = eval_lm_loss(model, eval, ids, max_len, cfg.train.micro_batch_size, rows, comm, dev);
    return {{"eval_loss", loss}, {"eval_ppl", std::exp(loss)}, {"eval_tokens", tokens}};
  };

  model->train();
  int exit_code = 0;
  double last_loss = NAN;
  const int64_t end_step = cfg.train.stop_at_step > 0 ? std::min(cfg.train.stop_at_step, cfg.train.max_steps)
                                                      : cfg.train.max_steps;
  while (step < end_step) {
    auto t0 = std::chrono::steady_clock::now();
    // 1. this rank's share of the global batch, cut into micro-batches
    std::vector<int64_t> idx = sampler.next(cfg.train.global_batch_size);
    std::vector<SeqBatch> micro;
    int64_t local_targets = 0;
    for (int64_t a = 0; a < accum; ++a) {
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
      auto logits = model->forward(b.tokens.to(dev), b.positions.to(dev), b.mask.to(dev));  // [B, T, V]
      LmLoss l = masked_lm_loss(logits, b.tokens.to(dev), b.target_mask.to(dev));
      (l.sum_nll * (comm.world_size() / global_targets)).backward();
      nll_sum += l.sum_nll.item<double>();
      tokens_seen += b.mask.sum().item<int64_t>();
    }
    const double loss = comm.all_reduce_scalar(nll_sum) / global_targets;
    // 3. all-reduce -> clip -> skip on non-finite -> step
    const double lr = lr_at(step, cfg.train.max_steps, cfg.train.warmup_steps,
                            cfg.train.learning_rate, cfg.train.min_lr_ratio);
    StepResult r = optimizer_step(opt, comm, lr, cfg.train.grad_clip, cfg.dist.bucket_mb, std::isfinite(loss));
    ++step;
    skipped_total += r.skipped;
    last_loss = loss;
    const double dt = seconds_since(t0);
    const double all_tokens = comm.all_reduce_scalar(static_cast<double>(tokens_seen));
    nlohmann::json row = {{"step", step}, {"loss", loss}, {"lr", lr}, {"grad_norm", r.grad_norm},
                          {"tokens_per_s", all_tokens / dt}, {"skipped", r.skipped},
                          {"skipped_total", skipped_total}, {"target_tokens", global_targets}};
    if (cfg.train.eval_every > 0 && step % cfg.train.eval_every == 0) row.update(evaluate());
    metrics.log(row);
    if (cfg.ckpt.every > 0 && step % cfg.ckpt.every == 0 && step < end_step) save();
    if (stop_requested(comm)) {
      metrics.message(fmt::format("# stop signal: checkpointing at step {} and exiting with code {}",
                                  step, kExitPreempted));
      exit_code = kExitPreempted;
      break;
    }
  }
  const std::string ckpt = save();
  nlohmann::json final_eval = evaluate();
  nlohmann::json summary = {{"stage", "sft"}, {"steps", step}, {"final_loss", last_loss},
                            {"skipped_steps", skipped_total}, {"checkpoint", ckpt},
                            {"complete", step >= cfg.train.max_steps}};
  summary.update(final_eval);
  metrics.summary(summary);
  metrics.message(fmt::format("# sft done: step {}, loss {:.4f}{}, checkpoint {}", step, last_loss,
                              final_eval.contains("eval_ppl")
                                  ? fmt::format(", held-out ppl {:.3f}", final_eval["eval_ppl"].get<double>())
                                  : std::string(),
                              ckpt));
  return exit_code;
}

}  // namespace rlhf
