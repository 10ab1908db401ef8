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
#include "ppo/reward_rules.h"
#include "ppo/frozen.h"
#include "ppo/ppo_step.h"
#include "ppo/rollout.h"

namespace rlhf {

namespace {

// PPO differentiates log π(a|s) of the distribution the rollouts were drawn from. That is
// softmax(logits / temperature), so every log-prob forward uses the sampling temperature; a
// top-k / top-p filter would make the sampling distribution a different, truncated one (and
// greedy sampling has no density), so they are refused here (rlhf_eval sample keeps them).
void check_ppo_sampling(const PpoSection& pc, int64_t vocab_size) {
  RLHF_CHECK(pc.temperature > 0, "ppo.temperature = {}: PPO needs a sampling distribution to "
             "differentiate; greedy decoding (0) has none. Use a temperature > 0 (1.0 is usual)",
             pc.temperature);
  RLHF_CHECK(pc.top_k == 0 || pc.top_k >= vocab_size, "ppo.top_k = {}: PPO's log-probs, ratio and "
             "KL are those of the full softmax(logits / temperature); top-k sampling draws from a "
             "truncated distribution they do not describe. Set ppo.top_k: 0 (top-k stays available "
             "in `rlhf_eval sample`)", pc.top_k);
  RLHF_CHECK(pc.top_p >= 1.0, "ppo.top_p = {}: PPO's log-probs, ratio and KL are those of the full "
             "softmax(logits / temperature); nucleus sampling draws from a truncated distribution "
             "they do not describe. Set ppo.top_p: 1.0 (it stays available in `rlhf_eval sample`)",
             pc.top_p);
}

void freeze(torch::nn::Module& m) {
  for (auto& p : m.parameters()) p.set_requires_grad(false);
  m.eval();
}

// What the iterations read: prompts, the ptx corpus and its held-out stream, held-out prompts.
struct PpoData {
  PromptData prompts, eval;
  PretrainData ptx, ptx_eval;
  int64_t max_len = 0, max_prompt = 0;
};

KlEstimator kl_estimator_of(KlEstimatorKind k) {
  switch (k) {
    case KlEstimatorKind::K1: return KlEstimator::K1;
    case KlEstimatorKind::K2: return KlEstimator::K2;
    case KlEstimatorKind::K3: return KlEstimator::K3;
  }
  return KlEstimator::K1;
}

PpoData load_ppo_data(const Config& cfg, const ModelSetup& ms) {
  const PpoSection& pc = cfg.ppo;
  RLHF_CHECK(!cfg.data.train.empty(), "data.train is not set: give a prompts dataset from rlhf_prep");
  RLHF_CHECK(pc.ptx_coef == 0 || !cfg.data.pretrain.empty(),
             "ppo.ptx_coef = {} but data.pretrain is not set", pc.ptx_coef);
  PpoData d;
  d.prompts = from_key("data.train", [&] { return PromptData::load(cfg.data.train, ms.tok.identity); });
  if (!cfg.data.pretrain.empty())
    d.ptx = from_key("data.pretrain", [&] { return PretrainData::load(cfg.data.pretrain, ms.tok.identity); });
  if (!cfg.data.pretrain_eval.empty())
    d.ptx_eval = from_key("data.pretrain_eval",
                          [&] { return PretrainData::load(cfg.data.pretrain_eval, ms.tok.identity); });
  if (!cfg.data.eval.empty())
    d.eval = from_key("data.eval", [&] { return PromptData::load(cfg.data.eval, ms.tok.identity); });
  d.max_len = seq_len_limit(cfg, ms.cfg);
  d.max_prompt = d.max_len - pc.max_new_tokens;
  RLHF_CHECK(d.max_prompt >= 2, "ppo.max_new_tokens = {} leaves no room for a prompt in {} tokens",
             pc.max_new_tokens, d.max_len);
  return d;
}

// The four models: actor and reference from SFT, the reward model frozen (with its fitted bias),
// the critic from ppo.critic_init (default: the RM) with a fresh head. No dropout (see run_ppo).
struct PpoNets {
  CausalLM actor{nullptr}, reference{nullptr};
  ScalarModel reward{nullptr}, critic{nullptr};
  PpoModels view() { return {actor, reference, reward, critic}; }
  // The models that only score: the reward model, and the reference unless it is the actor's base.
  std::vector<torch::nn::Module*> frozen() {
    std::vector<torch::nn::Module*> f;
    if (!reward.is_empty()) f.push_back(reward.get());  // none with ppo.reward: rule
    if (reference.ptr() != actor.ptr()) f.push_back(reference.get());
    return f;
  }
  std::vector<torch::nn::Module*> lora_models() {
    if (critic.is_empty()) return {actor.get()};
    return {actor.get(), critic.get()};
  }
};

// The frozen reward model of ppo.reward_model (kind scalar, the policy's tokenizer and template).
ScalarModel load_reward_model(const PpoSection& pc, const ModelSetup& ms, ModelFile& rm_file, bool root) {
  RLHF_CHECK(!pc.reward_model.empty(), "ppo.reward_model is not set: give the RM checkpoint "
             "(or ppo.reward: rule with ppo.reward_rule)");
  const std::string rm_path = from_key("ppo.reward_model", [&] { return resolve_model_path(pc.reward_model); });
  rm_file = from_key("ppo.reward_model", [&] { return read_model_h5(rm_path); });
  RLHF_CHECK(rm_file.kind == "scalar", "{}: ppo.reward_model must be a reward model (kind scalar), "
             "found '{}'", rm_path, rm_file.kind);
  RLHF_CHECK(rm_file.tok.identity == ms.tok.identity, "reward model tokenizer '{}' ({}) differs "
             "from the policy's '{}'", rm_file.tok.identity, rm_path, ms.tok.identity);
  RLHF_CHECK(rm_file.tok.chat_template == ms.tok.chat_template,
             "{}: the reward model was trained with chat template '{}' but the policy and its "
             "prompts use '{}'", rm_path, rm_file.tok.chat_template.empty() ? "(none: plain rows)"
             : rm_file.tok.chat_template_name, ms.tok.chat_template.empty() ? "(none: plain rows)"
             : ms.tok.chat_template_name);
  ScalarModel rm(rm_file.cfg);
  load_parameters(*rm, rm_file);
  if (root && !rm_file.extra.value("bias_fitted", false))
    log_warn("# warning: {} has no fitted bias (rm_train without data.bias_data)", rm_path);
  return rm;
}

// The critic from ppo.critic_init (default: the reward model's file rm_file) with a fresh head.
ScalarModel load_critic(const Config& cfg, const ModelFile& rm_file) {
  const PpoSection& pc = cfg.ppo;
  RLHF_CHECK(!pc.critic_init.empty() || pc.reward == RewardKind::Rm, "ppo.advantage: gae with "
             "ppo.reward: rule needs ppo.critic_init (the critic is otherwise initialised from the "
             "reward model, which a rule reward does not load)");
  ModelFile critic_file = pc.critic_init.empty() ? rm_file : from_key("ppo.critic_init", [&] {
    return read_model_h5(resolve_model_path(pc.critic_init));
  });
  ModelConfig critic_cfg = critic_file.cfg;
  critic_cfg.dropout = 0.0;
  ScalarModel critic(critic_cfg);
  load_parameters(*critic, critic_file, {"score.weight", "score.bias"}, true);
  attach_configured_lora(*critic, cfg.lora, &critic_file, "the critic");
  return critic;
}

PpoNets load_ppo_models(const Config& cfg, const ModelSetup& ms, const torch::Device& dev, bool root) {
  const PpoSection& pc = cfg.ppo;
  torch::manual_seed(cfg.run.seed);
  PpoNets n;
  ModelFile sft_file = read_model_h5(ms.init_path);
  n.actor = CausalLM(ms.cfg);
  load_parameters(*n.actor, sft_file);
  // With LoRA the reference policy is the actor's frozen base (adapters off, lora.h): one copy of
  // the base weights serves both.
  if (cfg.lora.enabled()) {
    attach_configured_lora(*n.actor, cfg.lora, &sft_file, "the actor");
    n.reference = n.actor;
    if (root) log_info("# ppo: LoRA actor and critic; reference policy = the actor's base (adapters off)");
  } else {
    n.reference = CausalLM(ms.cfg);
    load_parameters(*n.reference, sft_file);
  }
  sft_file.tensors.clear();
  ModelFile rm_file;
  if (pc.reward == RewardKind::Rm) n.reward = load_reward_model(pc, ms, rm_file, root);  // else a rule
  if (uses_critic(pc.advantage)) n.critic = load_critic(cfg, rm_file);  // else critic-free
  const bool lora = cfg.lora.enabled();
  torch::nn::Module no_reward;
  const int64_t cast = apply_frozen_dtype(cfg, dev, n.reward.is_empty() ? no_reward : *n.reward,
                                          lora ? nullptr : n.reference.get(),
                                          lora ? n.lora_models() : std::vector<torch::nn::Module*>{});
  if (root && cast > 0) log_info("# ppo: {} frozen parameters kept in bf16 (ppo.frozen_dtype)", cast);
  n.actor->to(dev);
  if (!n.critic.is_empty()) n.critic->to(dev);
  for (torch::nn::Module* m : n.frozen())  // ppo.offload_frozen: on the CPU until scoring
    if (!pc.offload_frozen) m->to(dev);
  if (!lora) freeze(*n.reference);
  if (!n.reward.is_empty()) freeze(*n.reward);
  return n;
}

// The per-iteration update options that do not change between iterations.
UpdateOptions base_update_options(const Config& cfg, const PpoData& d, int world) {
  const PpoSection& pc = cfg.ppo;
  UpdateOptions u;
  const int64_t minibatch = pc.minibatch_size > 0 ? pc.minibatch_size : cfg.train.global_batch_size;
  RLHF_CHECK(cfg.train.global_batch_size % minibatch == 0,
             "train.global_batch_size = {} is not divisible by ppo.minibatch_size = {}",
             cfg.train.global_batch_size, minibatch);
  // micro_batch_size counts rollout rows: ppo.samples_per_prompt per prompt.
  RLHF_CHECK(minibatch % world == 0, "ppo.minibatch_size = {} prompts does not split over {} ranks "
             "(a prompt's group of ppo.samples_per_prompt responses stays on one rank)", minibatch, world);
  accumulation_steps(minibatch * pc.samples_per_prompt, cfg.train.micro_batch_size, world,
                     "ppo.minibatch_size");  // checks
  u.epochs = pc.ppo_epochs;
  u.minibatch_rows = minibatch / world * pc.samples_per_prompt;  // a prompt's group stays together
  u.micro_rows = cfg.train.micro_batch_size;
  u.temperature = pc.temperature;
  u.clip_eps = pc.clip_eps;
  u.value_clip = pc.value_clip;
  u.vf_coef = pc.vf_coef;
  u.grad_clip = cfg.train.grad_clip;
  u.bucket_mb = cfg.dist.bucket_mb;
  if (pc.ptx_coef > 0) {
    u.ptx = &d.ptx;
    u.ptx_rows = accumulation_steps(pc.ptx_batch_size, 1, world, "ppo.ptx_batch_size");
    u.ptx_seq_len = pc.ptx_seq_len;
    u.ptx_coef = pc.ptx_coef;
    RLHF_CHECK(d.ptx.size() > pc.ptx_seq_len + 1, "data.pretrain has {} tokens, fewer than "
               "ppo.ptx_seq_len", d.ptx.size());
  }
  return u;
}

// The SFT checkpoint's model set-up for PPO: sampler checked, dropout off. No dropout in PPO:
// old log-probs and values are computed without it, so dropout in the update would make the
// first ratio differ from 1 by noise that clipping then acts on.
ModelSetup ppo_model_setup(const Config& cfg, bool root) {
  RLHF_CHECK(!cfg.init.empty(), "init is not set: PPO starts from the SFT checkpoint (init: runs/x/sft)");
  ModelSetup ms = cfg.init.empty() ? resolve_model(cfg, cfg.init)
                                  : from_key("init", [&] { return resolve_model(cfg, cfg.init); });
  check_ppo_sampling(cfg.ppo, ms.cfg.vocab_size);
  if (ms.cfg.dropout > 0 && root)
    log_info("# ppo: model.dropout = {} overridden to 0 for actor and critic (dropout "
             "noise would enter the PPO ratio)", ms.cfg.dropout);
  ms.cfg.dropout = 0.0;
  return ms;
}

// Rollouts written to run.dir/samples.jsonl every ppo.log_samples_every iterations (rank 0's first
// rows; on the embedded task with the hidden score).
constexpr int64_t kSamplesPerLog = 4;

// What one iteration reads and advances.
struct Iteration {
  const Config& cfg;
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
  RewardRule rule;  // ppo.reward: rule (reward_rules.h); empty: the reward model scores
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
  const std::vector<int64_t> idx = repeat_each(prompts, cfg.ppo.samples_per_prompt);
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
  {
    OnDeviceScope resident(it.frozen, it.dev, it.cfg.ppo.offload_frozen);
    if (it.rule) ro.raw_score = rule_scores(it.rule, ro, it.data.prompts, idx, it.tok);  // [B]
    make_experience(it.models, ro, it.exp, it.comm);
  }
  times.score = seconds_since(t1);
  const int64_t every = cfg.ppo.log_samples_every;
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
  nlohmann::json row = ppo_metrics(ro, st, times, cfg.train.global_batch_size * cfg.ppo.samples_per_prompt,
                                   beta, it.upd.lr, it.comm);
  if (!uses_critic(cfg.ppo.advantage))
    row.update(critic_free_metrics(ro, cfg.ppo.advantage, cfg.ppo.samples_per_prompt, it.comm));
  return row;
}

// PPO's held-out evaluation, every train.eval_every iterations and at the end (one per step:
// finish() reuses the last iteration's): ptx_eval_loss on data.pretrain_eval, and on data.eval's
// prompts — the first train.eval_batches × train.global_batch_size, sampled as in training with
// seed run.seed (the same draws at every evaluation) — the eval_* keys of policy_eval.h: reward
// under the RM, KL to the reference, length, EOS rate, hidden score on the embedded task.
class PpoEvaluation {
 public:
  PpoEvaluation(const Config& cfg, const PpoData& data, PpoNets& nets, const ModelSetup& ms,
                const SpecialIds& ids, Communicator& comm, const torch::Device& dev)
      : cfg_(cfg), data_(data), nets_(nets), tok_(*ms.tokenizer), comm_(comm), dev_(dev) {
    const PpoSection& pc = cfg.ppo;
    if (data.ptx_eval.size() > pc.ptx_seq_len)
      ptx_windows_ = std::min<int64_t>(64, data.ptx_eval.size() / pc.ptx_seq_len);
    opt_.sampling = sampling_config(pc.max_new_tokens, pc.temperature, 0, 1.0, ids);
    opt_.seed = static_cast<uint64_t>(cfg.run.seed);
    opt_.max_prompts = cfg.train.eval_batches * cfg.train.global_batch_size;
    opt_.micro_batch = cfg.train.micro_batch_size;
  }
  bool have_ptx() const { return ptx_windows_ > 0; }
  double ptx_loss() {
    return eval_stream_loss(nets_.actor, data_.ptx_eval, cfg_.ppo.ptx_seq_len, ptx_windows_, comm_, dev_);
  }
  // The evaluation at `step` (collective); an info line on the run log.
  nlohmann::json at(int64_t step, MetricsLogger& log) {
    if (step == step_) return last_;
    nlohmann::json j = nlohmann::json::object();
    if (have_ptx()) j["ptx_eval_loss"] = ptx_loss();
    if (data_.eval.size() > 0) {
      OnDeviceScope resident(nets_.frozen(), dev_, cfg_.ppo.offload_frozen);
      j.update(evaluate_policy(nets_.actor, &nets_.reference, nets_.reward, data_.eval, tok_,
                               data_.max_len, opt_, comm_, dev_).to_json("eval_"));
      log.message(fmt::format(
          "# ppo eval at step {} on {} held-out prompts: reward {:.4f}, KL to ref {:.3f}, length {:.1f}{}",
          step, j["eval_prompts"].get<int64_t>(), j["eval_reward_mean"].get<double>(),
          j["eval_kl_to_ref"].get<double>(), j["eval_length_mean"].get<double>(),
          j.contains("eval_hidden_score") ? fmt::format(", hidden score {:.4f}", j["eval_hidden_score"].get<double>())
                                          : std::string()));
    }
    step_ = step;
    last_ = j;
    return j;
  }

 private:
  const Config& cfg_;
  const PpoData& data_;
  PpoNets& nets_;
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
  return log_errors([&] { return run_ppo(parse_run_args(Stage::PPO, argc, argv)); });
}

int run_ppo(const RunRequest& req) {
  if (req.dry_run) return dry_run(Stage::PPO, req.cfg, req.planned_ranks());
  RunContext ctx = start_run(Stage::PPO, req);
  const Config& cfg = ctx.cfg;
  const PpoSection& pc = cfg.ppo;
  Communicator& comm = *ctx.comm;
  const torch::Device dev = ctx.device;
  ModelSetup ms = ppo_model_setup(cfg, comm.is_root());
  const PpoData data = load_ppo_data(cfg, ms);
  accept_dataset(ms, data.prompts.meta);
  if (data.ptx.size() > 0) accept_dataset(ms, data.ptx.meta);
  if (data.ptx_eval.size() > 0) accept_dataset(ms, data.ptx_eval.meta);
  if (data.eval.size() > 0) accept_dataset(ms, data.eval.meta);
  SpecialIds ids = for_rows(special_ids(ms.tok), data.prompts.meta);
  if (!cfg.ppo.stop_token.empty()) {  // e.g. a chat model's end of turn
    const int32_t s = ms.tokenizer->token_id(cfg.ppo.stop_token);
    RLHF_CHECK(s >= 0, "ppo.stop_token '{}' is not a token of the tokenizer {}", cfg.ppo.stop_token,
               ms.tok.spec);
    add_stop_id(ids.stops, ids.eos, s);
  }
  check_advantage_config(pc);
  if (pc.reward == RewardKind::Rule) {
    reward_rule(pc.reward_rule);  // an unknown name fails here, before the models load
    RLHF_CHECK(pc.reward_rule != "synth_hidden" || data.prompts.meta.source == "synth",
               "ppo.reward_rule: synth_hidden scores the embedded task's prompts, but data.train "
               "comes from '{}'", data.prompts.meta.source);
    RLHF_CHECK(data.eval.size() == 0, "data.eval with ppo.reward: rule: the held-out evaluation "
               "scores with a reward model; set data.eval: (empty) for now");
  }
  PpoNets nets = load_ppo_models(cfg, ms, dev, comm.is_root());
  const UpdateOptions upd = base_update_options(cfg, data, comm.world_size());

  // The shared loop (loop.h) with PPO's extra state: β, and the held-out ptx loss at the start
  // (for its rise at the end).
  AdaptiveKlController kl_ctl(pc.kl_coef, pc.kl_target, pc.kl_horizon);
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
  PpoEvaluation eval(cfg, data, nets, ms, ids, comm, dev);
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
                                     "minibatch {} per rank ({} per forward), ptx_coef {}", loop.n_params(),
                                     data.prompts.size(), cfg.train.global_batch_size / comm.world_size(),
                                     upd.minibatch_rows, upd.micro_rows, pc.ptx_coef));
  Iteration it{cfg, comm, dev, data, ids, nets.view(), loop.optimizer(0),
               critic ? &loop.optimizer(1) : nullptr, loop.sampler(),
               sampling_config(pc.max_new_tokens, pc.temperature, 0, 1.0, ids),
               ExperienceOptions{pc.temperature, pc.no_eos_penalty, pc.score_clip, pc.kl_coef,
                                 kl_estimator_of(pc.kl_estimator),
                                 pc.gamma, pc.gae_lambda, pc.advantage, pc.samples_per_prompt},
               upd, pc.critic_learning_rate > 0 ? pc.critic_learning_rate / cfg.train.learning_rate : 1.0,
               samples, *ms.tokenizer, nets.frozen(),
               pc.reward == RewardKind::Rule ? reward_rule(pc.reward_rule) : RewardRule{}};

  nlohmann::json last;
  const int exit_code = loop.run_steps([&](int64_t step) {
    nlohmann::json row = run_iteration(it, step, kl_ctl.value);
    if (pc.adaptive_kl)
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
