// config.h — typed experiment configuration, parsed once from YAML + `--set a.b=value` overrides.
//
// Contract:
// - load_config() validates every key against the stage's schema: an unknown key, a wrong type, an
//   out-of-range value, a missing file or malformed YAML throws ConfigError whose message names
//   the file/key, the bad value and what is expected (with a "did you mean" for unknown keys).
// - String values expand ${VAR} and ${VAR:-default} from the environment (pipelines use this).
// - After parsing, choices are enums; nothing downstream looks at YAML.
// - dump_config() gives the resolved YAML that is printed on rank 0, written to run.dir/config.yaml
//   and stored in every checkpoint; loading that text again gives the same Config.
#pragma once
#include <string>
#include <vector>

#include "common/core/check.h"
#include "common/core/strings.h"
#include "common/model/model.h"

namespace rlhf {

struct ConfigError : Error {
  using Error::Error;
};

enum class Stage { SFT, RM, PPO, DPO };
inline constexpr EnumNames<Stage, 4> kStageNames{
    {{Stage::SFT, "sft"}, {Stage::RM, "rm"}, {Stage::PPO, "ppo"}, {Stage::DPO, "dpo"}}};
enum class DeviceKind { CPU, CUDA };
inline constexpr EnumNames<DeviceKind, 2> kDeviceKindNames{{{DeviceKind::CPU, "cpu"}, {DeviceKind::CUDA, "cuda"}}};
enum class Precision { FP32, BF16 };
inline constexpr EnumNames<Precision, 2> kPrecisionNames{{{Precision::FP32, "fp32"}, {Precision::BF16, "bf16"}}};
enum class ResumeMode { Never, Auto };
inline constexpr EnumNames<ResumeMode, 2> kResumeModeNames{{{ResumeMode::Never, "never"}, {ResumeMode::Auto, "auto"}}};
enum class LogLevel { Debug, Info, Warn, Error };  // common/train/log.h
inline constexpr EnumNames<LogLevel, 4> kLogLevelNames{{{LogLevel::Debug, "debug"}, {LogLevel::Info, "info"},
                                                        {LogLevel::Warn, "warn"}, {LogLevel::Error, "error"}}};
// ppo.kl_estimator: Schulman's k1 = log r, k2 = (log r)^2 / 2, k3 = r - 1 - log r, with
// log r = log pi(a|s) - log pi_ref(a|s) per token (ppo/ppo_loss.h, ppo/kl_loss.h). Default k1 in
// the reward; k2 with ppo.kl_in_loss (whose gradient is the reverse KL's; k1 is refused there).
enum class KlEstimatorKind { K1, K2, K3 };
inline constexpr EnumNames<KlEstimatorKind, 3> kKlEstimatorNames{
    {{KlEstimatorKind::K1, "k1"}, {KlEstimatorKind::K2, "k2"}, {KlEstimatorKind::K3, "k3"}}};
// dpo.loss: sigmoid (Rafailov et al. 2023, with optional label smoothing) or ipo (Azar et al. 2023).
enum class DpoLossKind { Sigmoid, Ipo };
inline constexpr EnumNames<DpoLossKind, 2> kDpoLossNames{{{DpoLossKind::Sigmoid, "sigmoid"}, {DpoLossKind::Ipo, "ipo"}}};
// ppo.advantage: GAE with a critic, or a critic-free estimator (ppo/advantages.h, ppo/critic_free.h).
enum class AdvantageKind { Gae, Grpo, DrGrpo, Rloo, ReinforcePp };
inline constexpr EnumNames<AdvantageKind, 5> kAdvantageNames{
    {{AdvantageKind::Gae, "gae"}, {AdvantageKind::Grpo, "grpo"}, {AdvantageKind::DrGrpo, "dr_grpo"},
     {AdvantageKind::Rloo, "rloo"}, {AdvantageKind::ReinforcePp, "reinforce_pp"}}};
// ppo.loss_aggregation: how per-token policy (and KL / value) losses become one number (verl's
// names; ppo/ppo_loss.h): token_mean over the minibatch's response tokens; seq_mean_token_mean,
// each response's token mean averaged over responses (GRPO, Shao et al. 2024 eq. 3);
// seq_mean_token_sum_norm, each response's token SUM over a constant (ppo.max_new_tokens)
// averaged over responses (Dr. GRPO, Liu et al. 2025). Default token_mean; dr_grpo's is
// seq_mean_token_sum_norm.
enum class LossAggregation { TokenMean, SeqMeanTokenMean, SeqMeanTokenSumNorm };
inline constexpr EnumNames<LossAggregation, 3> kLossAggregationNames{
    {{LossAggregation::TokenMean, "token_mean"}, {LossAggregation::SeqMeanTokenMean, "seq_mean_token_mean"},
     {LossAggregation::SeqMeanTokenSumNorm, "seq_mean_token_sum_norm"}}};
enum class PairNormalizerKind { Paper, StrictPairs };  // rm_loss.h's PairNormalizer
inline constexpr EnumNames<PairNormalizerKind, 2> kPairNormalizerNames{
    {{PairNormalizerKind::Paper, "paper"}, {PairNormalizerKind::StrictPairs, "strict_pairs"}}};

struct RunSection {
  std::string dir = "runs/default";
  int64_t seed = 1234;
  int64_t log_every = 1;        // progress/metrics cadence in steps (metrics.jsonl gets every step)
  bool tensorboard = true;      // also write metrics as TensorBoard events to run.dir/tb
  LogLevel log_level = LogLevel::Info;  // lowest level printed to stderr and run.dir/train.log
};

struct TrainSection {
  int64_t max_steps = 100;      // fixes the LR schedule
  int64_t stop_at_step = 0;     // 0 = off; end early as if interrupted (checkpoint, exit code 0)
  int64_t max_skipped_steps = 10;  // stop (error) after this many skipped steps in a row; 0 = never
  int64_t global_batch_size = 32;  // sequences (SFT), prompt groups (RM), prompts (PPO) per step, all ranks
  int64_t micro_batch_size = 8;    // per rank per forward/backward; 0 = auto (start_run)
  double learning_rate = 3e-4;
  double min_lr_ratio = 0.1;    // cosine decays to learning_rate * min_lr_ratio
  int64_t warmup_steps = 10;
  double weight_decay = 0.1;    // only on >= 2-D weights
  double beta1 = 0.9, beta2 = 0.95, adam_eps = 1e-8;
  double grad_clip = 1.0;       // global norm; 0 = off
  int64_t eval_every = 0;       // 0 = only at the end
  int64_t eval_batches = 4;
  DeviceKind device = DeviceKind::CPU;
  Precision precision = Precision::FP32;  // bf16 = autocast on CUDA with fp32 master weights
};

struct CkptSection {
  int64_t every = 0;            // 0 = only when the run ends
  int64_t keep_last = 2;
  ResumeMode resume = ResumeMode::Never;
};

struct DataSection {
  std::string train, eval;      // HDF5 files from rlhf_prep
  std::string bias_data;        // RM: SFT demonstrations whose mean reward is fitted to 0 (default: none -> skip)
  std::string pretrain, pretrain_eval;  // PPO-ptx corpus (HDF5 kind pretrain)
  int64_t max_seq_len = 0;      // 0 = model.max_seq_len
};

struct DistSection {
  double bucket_mb = 25.0;
  // ZeRO (train/zero.h): 0 = every rank holds everything; 1 = AdamW moments sharded over ranks;
  // 2 = + gradients; 3 = + the transformer blocks' parameters (needs activation checkpointing).
  int64_t zero_stage = 0;
};

struct RmSection {
  // Divide each prompt's pair losses by C(K,2) (paper, InstructGPT eq. 1) or by the number of
  // strictly ordered pairs (strict_pairs). See rm/rm_loss.h.
  PairNormalizerKind pair_normalizer = PairNormalizerKind::Paper;
};

// ppo.reward: the frozen reward model, a C++ rule by name (ppo/reward_rules.h), an external
// program fed JSONL on stdin (ppo/reward_command.h), or an HTTP reward server (ppo/reward_remote.h).
enum class RewardKind { Rm, Rule, Command, Remote };
inline constexpr EnumNames<RewardKind, 4> kRewardNames{{{RewardKind::Rm, "rm"}, {RewardKind::Rule, "rule"},
                                                        {RewardKind::Command, "command"},
                                                        {RewardKind::Remote, "remote"}}};
struct PpoSection {
  std::string reward_model;     // checkpoint (RM with fitted bias); unused with reward: rule
  RewardKind reward = RewardKind::Rm;
  std::string reward_rule = "synth_hidden";  // ppo/reward_rules.h, with reward: rule
  std::string reward_command;   // with reward: command, run by /bin/sh -c once per batch
  double reward_timeout_s = 60; // reward: command: the most seconds one batch may take;
                                // reward: remote: one HTTP request (connect, send, answer)
  std::string reward_url;       // reward: remote: http://host:port/path (e.g. rlhf_serve's /get_reward)
  int64_t reward_retries = 2;   // reward: remote: retries of a failed request (connection, 5xx, 429)
  int64_t reward_batch_size = 64;  // reward: remote: the most queries per request
  std::string critic_init;      // default: reward_model
  int64_t ppo_epochs = 2;
  int64_t minibatch_size = 0;   // sequences per optimizer step within an iteration (global); 0 = whole batch
  double clip_eps = 0.2;
  double value_clip = 0.2;
  double vf_coef = 0.5;
  double critic_learning_rate = 0.0;  // 0 = train.learning_rate
  double gamma = 1.0;
  double gae_lambda = 0.95;
  AdvantageKind advantage = AdvantageKind::Gae;  // not gae: no critic (ppo/critic_free.h)
  int64_t samples_per_prompt = 1;  // responses per prompt per iteration (a group; same rank)
  double kl_coef = 0.05;        // β (initial value when adaptive)
  bool adaptive_kl = false;
  double kl_target = 6.0;
  int64_t kl_horizon = 10000;
  KlEstimatorKind kl_estimator = KlEstimatorKind::K1;  // unset with kl_in_loss: k2 (parse_config)
  bool kl_in_loss = false;      // true: β·KL (kl_estimator) is a loss term, not a reward penalty
  LossAggregation loss_aggregation = LossAggregation::TokenMean;  // unset with dr_grpo: seq_mean_token_sum_norm
  double ptx_coef = 0.0;        // γ_ptx; InstructGPT used 27.8; 0 = off
  int64_t ptx_batch_size = 8;   // pretraining sequences per optimizer step, global
  int64_t ptx_seq_len = 64;
  int64_t max_new_tokens = 32;
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  std::string stop_token;       // "" = none; a token text (e.g. "<|im_end|>") that also ends a response
  double no_eos_penalty = 0.0;  // subtracted from the RM score when a response has no EOS
  double score_clip = 0.0;      // 0 = off; clip RM score to ±score_clip
  Precision frozen_dtype = Precision::FP32;  // bf16: reward model + reference in bf16 (ppo/frozen.h)
  bool offload_frozen = false;  // reward model (+ reference) on the CPU between scoring phases
  int64_t log_samples_every = 0;  // 0 = off; every N iterations a few rollouts to run.dir/samples.jsonl
};

struct DpoSection {
  double beta = 0.1;            // β: strength of the implicit KL to the reference
  DpoLossKind loss = DpoLossKind::Sigmoid;
  double label_smoothing = 0.0;  // sigmoid only: the assumed rate of flipped preferences, [0, 0.5)
  bool ipo_average = true;      // ipo only: per-token MEAN log-ratios (TRL's form; false: sums)
  std::string reference;        // the frozen reference policy; "" = init (the SFT checkpoint)
};

struct Config {
  Stage stage = Stage::SFT;
  RunSection run;
  ModelConfig model;
  LoraOptions lora;                // model.lora.*: adapters on the trained models (lora.h)
  std::string tokenizer = "byte";  // spec for load_tokenizer (ignored when init has one)
  std::string init;             // "" = from scratch; else checkpoint (native dir/.h5)
  TrainSection train;
  CkptSection ckpt;
  DataSection data;
  DistSection dist;
  RmSection rm;
  PpoSection ppo;
  DpoSection dpo;
};

std::string stage_name(Stage s);

// file may be "" (defaults only). `sets` are "a.b=value" strings.
Config load_config(Stage stage, const std::string& file, const std::vector<std::string>& sets);
// Parse from text (used by tests and by resume); `origin` names the text in errors.
Config parse_config(Stage stage, const std::string& yaml_text, const std::string& origin,
                    const std::vector<std::string>& sets = {});
std::string dump_config(const Config& cfg);
// All valid keys for a stage (full paths), for docs and suggestions.
std::vector<std::string> config_keys(Stage stage);

// Keys that were given a non-default value but have no effect in this configuration, one
// sentence each (printed as warnings at start): model architecture keys and `tokenizer` when
// `init` is set (the checkpoint fixes them; model.dropout and model.activation_checkpointing
// still apply).
std::vector<std::string> ineffective_keys(const Config& cfg, Stage stage);

// Edit distance used for "did you mean" suggestions.
size_t edit_distance(const std::string& a, const std::string& b);

}  // namespace rlhf
