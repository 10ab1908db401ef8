// ppo_config.cpp — see ppo_config.h.
#include "ppo/ppo_config.h"

#include <fmt/format.h>

#include "common/train/dry_run.h"
#include "common/train/optimizer.h"
#include "ppo/reward/remote.h"
#include "ppo/reward/rules.h"

namespace rlhf {

namespace {

void add_ppo_keys(Config& cfg, Schema& s) {
  constexpr int64_t kMax = Schema::kMax;
  constexpr double kInf = Schema::kInf;
  PpoSection& p = ppo_section(cfg);
  s.add_string("data.pretrain", &p.pretrain);
  s.add_string("data.pretrain_eval", &p.pretrain_eval);
  s.add_string("ppo.reward_model", &p.reward_model);
  s.add_enum("ppo.reward", &p.reward, kRewardNames);
  s.add_string("ppo.reward_rule", &p.reward_rule);
  s.add_string("ppo.reward_command", &p.reward_command);
  s.add_double("ppo.reward_timeout_s", &p.reward_timeout_s, 0, 86400, true);  // at most a day
  s.add_string("ppo.reward_url", &p.reward_url);
  s.add_int("ppo.reward_retries", &p.reward_retries, 0, 100);
  s.add_int("ppo.reward_batch_size", &p.reward_batch_size, 1, kMax);
  s.add_string("ppo.critic_init", &p.critic_init);
  s.add_int("ppo.ppo_epochs", &p.ppo_epochs, 1, 1000);
  s.add_int("ppo.minibatch_size", &p.minibatch_size, 0, kMax);
  s.add_double("ppo.clip_eps", &p.clip_eps, 0, 1, true);
  s.add_double("ppo.value_clip", &p.value_clip, 0, kInf);
  s.add_double("ppo.vf_coef", &p.vf_coef, 0, kInf);
  s.add_double("ppo.critic_learning_rate", &p.critic_learning_rate, 0, 10);
  s.add_double("ppo.gamma", &p.gamma, 0, 1);
  s.add_double("ppo.gae_lambda", &p.gae_lambda, 0, 1);
  s.add_enum("ppo.advantage", &p.advantage, kAdvantageNames);
  s.add_int("ppo.samples_per_prompt", &p.samples_per_prompt, 1, 1024);
  s.add_double("ppo.kl_coef", &p.kl_coef, 0, kInf);
  s.add_bool("ppo.adaptive_kl", &p.adaptive_kl);
  s.add_double("ppo.kl_target", &p.kl_target, 0, kInf, true);
  s.add_int("ppo.kl_horizon", &p.kl_horizon, 1, kMax);
  s.add_enum("ppo.kl_estimator", &p.kl_estimator, kKlEstimatorNames);
  s.add_bool("ppo.kl_in_loss", &p.kl_in_loss);
  s.add_enum("ppo.loss_aggregation", &p.loss_aggregation, kLossAggregationNames);
  s.add_double("ppo.ptx_coef", &p.ptx_coef, 0, kInf);
  s.add_int("ppo.ptx_batch_size", &p.ptx_batch_size, 1, kMax);
  s.add_int("ppo.ptx_seq_len", &p.ptx_seq_len, 2, kMax);
  s.add_int("ppo.max_new_tokens", &p.max_new_tokens, 1, kMax);
  s.add_double("ppo.temperature", &p.temperature, 0, kInf);
  s.add_int("ppo.top_k", &p.top_k, 0, kMax);
  s.add_double("ppo.top_p", &p.top_p, 0, 1, true);
  s.add_string("ppo.stop_token", &p.stop_token);
  s.add_double("ppo.no_eos_penalty", &p.no_eos_penalty, 0, kInf);
  s.add_double("ppo.score_clip", &p.score_clip, 0, kInf);
  s.add_int("ppo.log_samples_every", &p.log_samples_every, 0, kMax);
  s.add_enum("ppo.frozen_dtype", &p.frozen_dtype, kPrecisionNames);
  s.add_bool("ppo.offload_frozen", &p.offload_frozen);
  s.add_enum("ppo.rollout_engine", &p.rollout_engine, kEngineNames);
  s.add_int("ppo.max_batch_rows", &p.engine.max_batch_rows, 1, kMax);
  s.add_int("ppo.max_batch_tokens", &p.engine.max_batch_tokens, 1, kMax);
  s.add_int("ppo.kv_block_size", &p.engine.block_size, 1, 4096);
}

// Throws ConfigError "origin: message" when `ok` is false.
template <class... Args>
void require(bool ok, const std::string& origin, fmt::format_string<Args...> f, Args&&... args) {
  if (!ok) throw ConfigError(origin + ": " + fmt::format(f, std::forward<Args>(args)...));
}

// Defaults that depend on other keys (dump_config then writes them out): ppo.kl_estimator is k2
// with ppo.kl_in_loss, and k1 is refused there; ppo.loss_aggregation is seq_mean_token_sum_norm
// with ppo.advantage: dr_grpo. Then every check that needs no model or data.
void resolve_ppo(Config& cfg, const std::set<std::string>& given, const std::string& origin) {
  PpoSection& p = ppo_section(cfg);
  if (p.kl_in_loss && !given.count("ppo.kl_estimator")) p.kl_estimator = KlEstimator::K2;
  require(!p.kl_in_loss || p.kl_estimator != KlEstimator::K1, origin,
          "ppo.kl_estimator: k1 with ppo.kl_in_loss: true: in the loss, k1 = log(pi/pi_ref) has an "
          "expected gradient of exactly zero (E_pi[grad log pi] = 0), so it adds only noise and never "
          "pulls the policy to the reference; use k2 (its expected gradient is the reverse KL's; the "
          "default) or k3, or set ppo.kl_in_loss: false to keep k1 in the reward");
  if (p.advantage == AdvantageKind::DrGrpo && !given.count("ppo.loss_aggregation"))
    p.loss_aggregation = LossAggregation::SeqMeanTokenSumNorm;
  require(!is_group_estimator(p.advantage) || p.samples_per_prompt >= 2, origin,
          "ppo.samples_per_prompt = {} with ppo.advantage: {}: a group estimator compares the "
          "responses to one prompt with each other and needs at least 2. Set "
          "ppo.samples_per_prompt: 2 or more (4 to 16 is usual)",
          p.samples_per_prompt, kAdvantageNames.name(p.advantage));
  require(p.ptx_coef == 0 || !p.pretrain.empty(), origin, "ppo.ptx_coef = {} but data.pretrain is not set",
          p.ptx_coef);
  require(p.reward != RewardKind::Command || !p.reward_command.empty(), origin,
          "ppo.reward: command needs ppo.reward_command (a program that reads JSONL rows on stdin and "
          "answers one number per line; see docs/CONFIG.md)");
  require(p.reward != RewardKind::Remote || !p.reward_url.empty(), origin,
          "ppo.reward: remote needs ppo.reward_url (e.g. http://127.0.0.1:5000/get_reward, served by "
          "rlhf_serve rm; see docs/CONFIG.md)");
  try {  // unknown rule names and malformed URLs fail here, before any model loads
    if (p.reward == RewardKind::Rule) reward_rule(p.reward_rule);
    if (p.reward == RewardKind::Remote) split_reward_url(p.reward_url);
  } catch (const Error& e) {
    throw ConfigError(origin + ": " + e.what());
  }
  require(p.reward != RewardKind::Remote || http_client_available(), origin,
          "ppo.reward: remote: this build has no HTTP client (cpp-httplib, Debian's "
          "libcpp-httplib-dev, was not found when it was configured: install it and rebuild)");
  require(!uses_critic(p.advantage) || p.reward == RewardKind::Rm || !p.critic_init.empty(), origin,
          "ppo.advantage: gae with ppo.reward: {} needs ppo.critic_init (the critic is otherwise "
          "initialised from the reward model, which a {} reward does not load)",
          kRewardNames.name(p.reward), kRewardNames.name(p.reward));
}

StagePlan ppo_plan(const Config& cfg) {
  const PpoSection& p = ppo_section(cfg);
  StagePlan plan;
  plan.rows_per_sample = p.samples_per_prompt;  // batch sizes count prompts; micro-batches rows
  plan.step_samples = p.minibatch_size;
  plan.step_key = "ppo.minibatch_size";
  plan.generated_tokens = p.max_new_tokens;
  plan.generated_key = "ppo.max_new_tokens";
  plan.frozen_bf16 = p.frozen_dtype == Precision::BF16;
  plan.offload_frozen = p.offload_frozen;
  return plan;
}

// The actor; a critic with gae (ppo.critic_init, default the reward model); the reference; the
// reward model with ppo.reward: rm.
std::vector<StageModel> ppo_models(const Config& cfg, const ModelConfig& base) {
  const PpoSection& p = ppo_section(cfg);
  RLHF_CHECK(!cfg.init.empty(), "init is not set: PPO starts from the SFT checkpoint");
  const bool rm_used = p.reward == RewardKind::Rm;
  std::vector<StageModel> out{{"actor", base, false, true}};
  if (uses_critic(p.advantage)) {
    ModelConfig critic = p.critic_init.empty() ? checkpoint_model_config(p.reward_model, "ppo.reward_model")
                                               : checkpoint_model_config(p.critic_init, "ppo.critic_init");
    critic.activation_checkpointing = cfg.model.activation_checkpointing;
    out.push_back({"critic", critic, true, true});
  }
  out.push_back({"reference", base, false, false});
  if (rm_used) out.push_back({"reward", checkpoint_model_config(p.reward_model, "ppo.reward_model"), true, false});
  return out;
}

}  // namespace

const StageSpec& ppo_stage() {
  static const StageSpec spec{
      "ppo", "PPO-ptx against the reward model (stage 3)",
      [] { return std::make_unique<PpoSection>(); }, add_ppo_keys, resolve_ppo, ppo_plan, ppo_models};
  return spec;
}

PpoSection& ppo_section(Config& cfg) { return section_as<PpoSection>(cfg, "ppo"); }
const PpoSection& ppo_section(const Config& cfg) { return section_as<PpoSection>(cfg, "ppo"); }

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

ExperienceOptions experience_options(const PpoSection& pc) {
  ExperienceOptions e;
  e.temperature = pc.temperature;
  e.no_eos_penalty = pc.no_eos_penalty;
  e.score_clip = pc.score_clip;
  e.kl_coef = pc.kl_coef;
  e.estimator = pc.kl_estimator;
  e.kl_in_loss = pc.kl_in_loss;
  e.gamma = pc.gamma;
  e.gae_lambda = pc.gae_lambda;
  e.advantage = pc.advantage;
  e.group = pc.samples_per_prompt;
  return e;
}

UpdateOptions base_update_options(const Config& cfg, const PretrainData& ptx, int world) {
  const PpoSection& pc = ppo_section(cfg);
  UpdateOptions u;
  const int64_t minibatch = pc.minibatch_size > 0 ? pc.minibatch_size : cfg.train.global_batch_size;
  RLHF_CHECK(cfg.train.global_batch_size % minibatch == 0,
             "train.global_batch_size = {} is not divisible by ppo.minibatch_size = {}",
             cfg.train.global_batch_size, minibatch);
  // micro_batch_size counts rollout rows: ppo.samples_per_prompt per prompt.
  RLHF_CHECK(minibatch % world == 0, "ppo.minibatch_size = {} prompts does not split over {} ranks "
             "(a prompt's group of ppo.samples_per_prompt responses stays on one rank)", minibatch, world);
  accumulation_steps(minibatch, cfg.train.micro_batch_size, world,
                     pc.minibatch_size > 0 ? "ppo.minibatch_size" : "train.global_batch_size",
                     pc.samples_per_prompt);  // checks
  u.epochs = pc.ppo_epochs;
  u.minibatch_rows = minibatch / world * pc.samples_per_prompt;  // a prompt's group stays together
  u.micro_rows = cfg.train.micro_batch_size;
  u.kl_estimator = pc.kl_estimator;
  u.aggregation = pc.loss_aggregation;
  u.horizon = static_cast<double>(pc.max_new_tokens);
  u.temperature = pc.temperature;
  u.clip_eps = pc.clip_eps;
  u.value_clip = pc.value_clip;
  u.vf_coef = pc.vf_coef;
  u.grad_clip = cfg.train.grad_clip;
  u.bucket_mb = cfg.dist.bucket_mb;
  if (pc.ptx_coef > 0) {
    u.ptx = &ptx;
    u.ptx_rows = accumulation_steps(pc.ptx_batch_size, 1, world, "ppo.ptx_batch_size");
    u.ptx_seq_len = pc.ptx_seq_len;
    u.ptx_coef = pc.ptx_coef;
    RLHF_CHECK(ptx.size() > pc.ptx_seq_len + 1, "data.pretrain has {} tokens, fewer than "
               "ppo.ptx_seq_len", ptx.size());
  }
  return u;
}

SamplingConfig ppo_sampling(const PpoSection& pc, const SpecialIds& ids) {
  SamplingConfig sc = sampling_config(pc.max_new_tokens, pc.temperature, 0, 1.0, ids);
  sc.engine = pc.rollout_engine;
  sc.engine_opt = pc.engine;
  return sc;
}

}  // namespace rlhf
