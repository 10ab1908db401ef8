// ppo_trainer.cpp — ppo_train: set-up (data, the four models) and the iterations, run by the
// training loop all stages share (loop.h: optimizers, resume, seeding, checkpoints, stop signal,
// summary; β and the start ptx loss as PPO's extra state); each iteration is the three steps of
// ppo_step.h.
#include "ppo/ppo_trainer.h"

#include <cmath>
#include <optional>

#include "common/core/rng.h"
#include "common/model/lm_loss.h"
#include "common/task/synth_task.h"
#include "common/train/dry_run.h"
#include "common/train/log.h"
#include "common/train/loop.h"
#include "common/train/run.h"
#include "common/train/samples.h"
#include "common/train/train_common.h"
#include "ppo/policy_eval.h"
#include "ppo/critic_free.h"
#include "ppo/ppo_loss.h"
#include "ppo/reward/remote.h"
#include "ppo/reward/rules.h"
#include "ppo/reward/source.h"
#include "ppo/frozen.h"
#include "ppo/ppo_config.h"
#include "ppo/ppo_setup.h"
#include "ppo/ppo_step.h"
#include "ppo/rollout.h"

namespace rlhf {

namespace {

// Rollouts written to run.dir/samples.jsonl every ppo.log_samples_every iterations (rank 0's first
// rows; on the embedded task with the hidden score).
constexpr int64_t kSamplesPerLog = 4;

// What one iteration reads and advances.
struct Iteration {
  const Config& cfg;
  const PpoSection& pc;
  Communicator& comm;
  const torch::Device dev;
  const PpoData& data;
  const SpecialIds ids;
  PpoModels models;
  AdamW& actor_opt;
  AdamW* critic_opt;  // nullptr without a critic
  ShardedSampler& sampler;
  const SamplingConfig sc;
  ExperienceOptions exp;
  UpdateOptions upd;
  double critic_lr_ratio = 1.0;
  SamplesLog& samples;
  const Tokenizer& tok;
  std::vector<torch::nn::Module*> frozen;  // moved to dev for scoring with ppo.offload_frozen
  const RewardSource& reward;  // ppo.reward (reward/source.h)
};

// Rank 0's first rows of this iteration's experience: prompt, response, RM score (raw, and after
// the no-EOS penalty / clip), the sequence's KL to the reference (sum of the per-token estimator),
// length, EOS, and on the embedded task the hidden score.
void log_samples(Iteration& it, int64_t step, const std::vector<int64_t>& idx, const Rollout& ro) {
  if (!it.comm.is_root()) return;
  const int64_t n = std::min<int64_t>(kSamplesPerLog, ro.batch());
  const std::vector<int64_t> first(idx.begin(), idx.begin() + n);
  const std::vector<std::string> prompts = decode_prompts(it.data.prompts, first, it.tok);
  const std::vector<std::string> responses = decode_responses(ro.slice(0, n), it.tok);
  const torch::Tensor kl = ro.kl.slice(0, 0, n).sum(1).to(torch::kCPU);
  const torch::Tensor len = ro.response_mask.slice(0, 0, n).sum(1).to(torch::kCPU);
  const torch::Tensor raw = ro.raw_score.to(torch::kCPU), score = ro.score.to(torch::kCPU);
  const torch::Tensor eos = ro.has_eos.to(torch::kCPU);
  for (int64_t b = 0; b < n; ++b) {
    nlohmann::json row = {{"step", step + 1}, {"stage", "ppo"}, {"prompt", prompts[b]},
                          {"response", responses[b]}, {"rm_score", raw[b].item<double>()},
                          {"reward", score[b].item<double>()}, {"kl", kl[b].item<double>()},
                          {"length", len[b].item<int64_t>()}, {"eos", eos[b].item<bool>()}};
    if (it.data.prompts.meta.source == "synth")
      row["hidden_score"] = synth_hidden_score(prompts[b], responses[b], eos[b].item<bool>());
    it.samples.write(row);
  }
}

// One PPO iteration at `step` with β = beta: rollouts → experience → update. Returns the
// metrics row (without "step").
nlohmann::json run_iteration(Iteration& it, int64_t step, double beta) {
  const Config& cfg = it.cfg;
  const auto t0 = std::chrono::steady_clock::now();
  IterationTimes times;
  // 1. rollouts from the current policy, one sampling stream per row of the global batch
  const std::vector<int64_t> prompts = it.sampler.next(cfg.train.global_batch_size);
  // ppo.samples_per_prompt = n: each prompt row n times in a row (a group, on this rank), each
  // row with its own sampling stream (seeded by its index in the global batch of rows).
  const std::vector<int64_t> idx = repeat_each(prompts, it.pc.samples_per_prompt);
  auto [ptoks, pmask] = prompt_batch(it.data.prompts, idx, it.ids, it.data.max_prompt);
  std::vector<uint64_t> row_seeds;
  const int64_t first_row = it.comm.rank() * static_cast<int64_t>(idx.size());
  for (size_t i = 0; i < idx.size(); ++i)
    row_seeds.push_back(mix_seed(cfg.run.seed, step, static_cast<int>(first_row + i), 1));
  Rollout ro;
  {  // (a block, not a lambda: C++17 lambdas cannot capture the structured bindings above)
    GatheredParams full(it.actor_opt);  // ZeRO stage 3: the whole actor for decoding
    ro = generate_rollout(it.models.actor, ptoks.to(it.dev), pmask.to(it.dev), it.sc, row_seeds);
  }
  times.generate = seconds_since(t0);
  // 2. experience: scores, log-probs, values, KL-shaped rewards, advantages
  const auto t1 = std::chrono::steady_clock::now();
  it.exp.kl_coef = beta;
  it.upd.kl_loss_coef = it.pc.kl_in_loss ? beta : 0.0;  // ppo.kl_in_loss: β in the loss instead
  {
    OnDeviceScope resident(it.frozen, it.dev, it.pc.offload_frozen);
    // [B]; command/remote: collective, a failure throws StepAbortedError (checkpoint, then stop)
    ro.raw_score = it.reward.score(ro, it.data.prompts, idx, it.comm);
    make_experience(it.models, ro, it.exp, it.comm);
  }
  times.score = seconds_since(t1);
  const int64_t every = it.pc.log_samples_every;
  if (every > 0 && (step + 1) % every == 0) log_samples(it, step, idx, ro);
  // 3. PPO epochs over minibatches, with the ptx term
  const auto t2 = std::chrono::steady_clock::now();
  it.upd.lr = lr_at(step, cfg.train.max_steps, cfg.train.warmup_steps, cfg.train.learning_rate,
                    cfg.train.min_lr_ratio);
  it.upd.critic_lr = it.upd.lr * it.critic_lr_ratio;
  it.upd.shuffle_seed = mix_seed(cfg.run.seed, step, 0, 3);  // the same on every rank (ppo_step.h)
  it.upd.ptx_seed = mix_seed(cfg.run.seed, step, 0, 2);
  const UpdateStats st = ppo_update(it.models, it.actor_opt, it.critic_opt, ro, it.upd, it.comm, it.dev);
  times.train = seconds_since(t2);
  times.total = seconds_since(t0);
  // 4. the metrics row
  nlohmann::json row = ppo_metrics(ro, st, times, cfg.train.global_batch_size * it.pc.samples_per_prompt,
                                   beta, it.upd.lr, it.comm);
  if (!uses_critic(it.pc.advantage))
    row.update(critic_free_metrics(ro, it.pc.advantage, it.pc.samples_per_prompt, it.comm));
  return row;
}

// PPO's held-out evaluation, every train.eval_every iterations and at the end (one per step:
// finish() reuses the last iteration's): ptx_eval_loss on data.pretrain_eval, and on data.eval's
// prompts — the first train.eval_batches × train.global_batch_size, sampled as in training with
// seed run.seed (the same draws at every evaluation) — the eval_* keys of policy_eval.h: reward
// under ppo.reward (raw), KL to the reference, length, EOS rate, hidden score on the embedded
// task. An external reward that fails here (command, remote) costs that evaluation its eval_*
// keys, not the run: a warning on the run log and eval_error in the row (and in summary.json when
// it is the final evaluation); a failure that persists stops the next iteration, which
// checkpoints first.
class PpoEvaluation {
 public:
  PpoEvaluation(const Config& cfg, const PpoData& data, PpoModels& nets, const RewardSource& reward,
                const ModelSetup& ms, const SpecialIds& ids, Communicator& comm, const torch::Device& dev)
      : cfg_(cfg), data_(data), nets_(nets), reward_(reward), tok_(*ms.tokenizer), comm_(comm), dev_(dev) {
    const PpoSection& pc = ppo_section(cfg);
    if (data.ptx_eval.size() > pc.ptx_seq_len)
      ptx_windows_ = std::min<int64_t>(64, data.ptx_eval.size() / pc.ptx_seq_len);
    opt_.sampling = ppo_sampling(pc, ids);
    opt_.seed = static_cast<uint64_t>(cfg.run.seed);
    opt_.max_prompts = cfg.train.eval_batches * cfg.train.global_batch_size;
    opt_.micro_batch = cfg.train.micro_batch_size;
  }
  bool have_ptx() const { return ptx_windows_ > 0; }
  double ptx_loss() {
    return eval_stream_loss(nets_.actor, data_.ptx_eval, ppo_section(cfg_).ptx_seq_len, ptx_windows_, comm_, dev_);
  }
  // The evaluation at `step` (collective); an info line on the run log.
  nlohmann::json at(int64_t step, MetricsLogger& log) {
    if (step == step_) return last_;
    nlohmann::json j = nlohmann::json::object();
    if (have_ptx()) j["ptx_eval_loss"] = ptx_loss();
    if (data_.eval.size() > 0) j.update(held_out(step, log));
    step_ = step;
    last_ = j;
    return j;
  }

 private:
  // The eval_* keys on data.eval's prompts; only eval_error when an external reward fails.
  nlohmann::json held_out(int64_t step, MetricsLogger& log) {
    OnDeviceScope resident(nets_.frozen(), dev_, ppo_section(cfg_).offload_frozen);
    nlohmann::json j;
    try {
      j = evaluate_policy(nets_.actor, &nets_.reference, reward_, data_.eval, tok_, data_.max_len, opt_,
                          comm_, dev_).to_json("eval_");
    } catch (const StepAbortedError& e) {  // on every rank: the failure was all-gathered
      const std::string why = fmt::format("ppo.reward: {} failed on the held-out prompts: {}",
                                          kRewardNames.name(ppo_section(cfg_).reward), e.what());
      log.message(fmt::format("# warning: ppo eval at step {} skipped: {}", step, why));
      return {{"eval_error", why}};
    }
    log.message(fmt::format(
        "# ppo eval at step {} on {} held-out prompts: reward {:.4f}, KL to ref {:.3f}, length {:.1f}{}",
        step, j["eval_prompts"].get<int64_t>(), j["eval_reward_mean"].get<double>(),
        j["eval_kl_to_ref"].get<double>(), j["eval_length_mean"].get<double>(),
        j.contains("eval_hidden_score") ? fmt::format(", hidden score {:.4f}", j["eval_hidden_score"].get<double>())
                                        : std::string()));
    return j;
  }

  const Config& cfg_;
  const PpoData& data_;
  PpoModels& nets_;
  const RewardSource& reward_;
  const Tokenizer& tok_;
  Communicator& comm_;
  const torch::Device dev_;
  PolicyEvalOptions opt_;
  int64_t ptx_windows_ = 0;
  int64_t step_ = -1;
  nlohmann::json last_;
};

}  // namespace

int run_ppo(int argc, char** argv) {
  return run_stage_cli(ppo_stage(), argc, argv, [](const RunRequest& r) { return run_ppo(r); });
}

int run_ppo(const RunRequest& req) {
  RunContext ctx = start_run(req);
  const Config& cfg = ctx.cfg;
  const PpoSection& pc = ppo_section(cfg);
  Communicator& comm = *ctx.comm;
  const torch::Device dev = ctx.device;
  ModelSetup ms = ppo_model_setup(cfg, comm.is_root());
  const PpoData data = load_ppo_data(cfg, ms);
  accept_dataset(ms, data.prompts.meta);
  if (data.ptx.size() > 0) accept_dataset(ms, data.ptx.meta);
  if (data.ptx_eval.size() > 0) accept_dataset(ms, data.ptx_eval.meta);
  if (data.eval.size() > 0) accept_dataset(ms, data.eval.meta);
  const SpecialIds ids = ppo_special_ids(cfg, ms, data.prompts.meta);
  PpoModels nets = load_ppo_models(cfg, ms, dev, comm.is_root());
  const RewardSource reward(pc, nets.reward, ids, *ms.tokenizer,
                            cfg.train.global_batch_size * pc.samples_per_prompt / comm.world_size());
  const UpdateOptions upd = base_update_options(cfg, data.ptx, comm.world_size());

  // The shared loop (loop.h) with PPO's extra state: β, and the held-out ptx loss at the start
  // (for its rise at the end).
  KlController kl_ctl(pc.kl_coef, pc.adaptive_kl, pc.kl_target, pc.kl_horizon);
  double ptx_eval_start = NAN;
  ExtraState extra{
      [&]() -> nlohmann::json {
        return {{"kl_coef", kl_ctl.value}, {"ptx_eval_loss_start", std::isnan(ptx_eval_start) ? 0.0 : ptx_eval_start}};
      },
      [&](const nlohmann::json& st) {
        kl_ctl.value = st.at("kl_coef").get<double>();
        ptx_eval_start = st.value("ptx_eval_loss_start", NAN);
      }};
  const bool critic = !nets.critic.is_empty();  // gae only (critic_free.h)
  std::vector<CkptModel> saved{{"model.h5", nets.actor.get(), "causal_lm", {}}};
  std::vector<TrainedModel> trained{{nets.actor.get(), "actor"}};
  if (critic) {
    saved.push_back({"critic.h5", nets.critic.get(), "scalar", {{"critic", true}}});
    trained.push_back({nets.critic.get(), "critic"});
  }
  TrainLoop loop(ctx, ms, saved, trained, data.prompts.size(), extra);
  PpoEvaluation eval(cfg, data, nets, reward, ms, ids, comm, dev);
  if (eval.have_ptx() && std::isnan(ptx_eval_start)) {
    GatheredParams actor(loop.optimizer(0));  // ZeRO stage 3: ranks may run different pass counts
    ptx_eval_start = eval.ptx_loss();
  }
  auto evaluate = [&] {
    // ZeRO stage 3: sharded evaluation runs different numbers of passes per rank (and block
    // gathers are collective): hold the whole models instead.
    GatheredParams actor(loop.optimizer(0));
    std::optional<GatheredParams> critic_full;
    if (critic) critic_full.emplace(loop.optimizer(1));
    return eval.at(loop.step(), loop.metrics());
  };
  SamplesLog samples(cfg.run.dir, comm.is_root(), loop.resumed());
  loop.metrics().message(fmt::format("# ppo: actor+critic {} trainable params, {} prompts, {} per rank per iteration, "
                                     "minibatch {} per rank ({} per forward), loss {}, KL {} ({}), ptx_coef {}", loop.n_params(),
                                     data.prompts.size(), cfg.train.global_batch_size / comm.world_size(),
                                     upd.minibatch_rows, upd.micro_rows, kLossAggregationNames.name(pc.loss_aggregation),
                                     pc.kl_in_loss ? "in the loss" : "in the reward",
                                     kKlEstimatorNames.name(pc.kl_estimator), pc.ptx_coef));
  Iteration it{cfg, pc, comm, dev, data, ids, nets, loop.optimizer(0),
               critic ? &loop.optimizer(1) : nullptr, loop.sampler(),
               ppo_sampling(pc, ids),
               experience_options(pc),
               upd, pc.critic_learning_rate > 0 ? pc.critic_learning_rate / cfg.train.learning_rate : 1.0,
               samples, *ms.tokenizer, nets.frozen(), reward};

  nlohmann::json last;
  const int exit_code = loop.run_steps([&](int64_t step) {
    nlohmann::json row = run_iteration(it, step, kl_ctl.value);
    kl_ctl.update(row["kl_to_ref"].get<double>(), cfg.train.global_batch_size * pc.samples_per_prompt);  // β for the next
    last = row;
    last["step"] = step + 1;
    return row;
  }, evaluate);
  nlohmann::json summary = loop.finish("ppo", {{"kl_coef", kl_ctl.value}, {"last", last}}, [&]() -> nlohmann::json {
    nlohmann::json j = evaluate();
    if (!eval.have_ptx()) return j;
    const double end_loss = j.at("ptx_eval_loss").get<double>();
    j.erase("ptx_eval_loss");
    j.update({{"ptx_eval_loss_start", ptx_eval_start}, {"ptx_eval_loss_end", end_loss},
              {"ptx_eval_loss_rise", end_loss - ptx_eval_start}});
    return j;
  });
  loop.metrics().message(fmt::format("# ppo done: step {}, checkpoint {}", loop.step(),
                                     summary["checkpoint"].get<std::string>()));
  return exit_code;
}

}  // namespace rlhf
