// config.h — typed experiment configuration, parsed once from YAML + `--set a.b=value` overrides.
//
// Contract:
// - The sections every stage has live here (run, model, train, ckpt, data, dist); a stage's own
//   keys, their checks and defaults live with the stage (<stage>/<stage>_config.{h,cpp}) and come
//   in through its StageSpec (stage_spec.h): this layer names no stage.
// - load_config() validates every key against the stage's schema: an unknown key, a wrong type, an
//   out-of-range value, a missing file or malformed YAML throws ConfigError whose message names
//   the file/key, the bad value and what is expected (with a "did you mean" for unknown keys).
// - String values expand ${VAR} and ${VAR:-default} from the environment (pipelines use this).
// - After parsing, choices are enums; nothing downstream looks at YAML.
// - dump_config() gives the resolved YAML that is printed on rank 0, written to run.dir/config.yaml
//   and stored in every checkpoint; loading that text again gives the same Config.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "common/core/check.h"
#include "common/core/strings.h"
#include "common/model/model.h"

namespace rlhf {

struct ConfigError : Error {
  using Error::Error;
};

enum class DeviceKind { CPU, CUDA };
inline constexpr EnumNames<DeviceKind, 2> kDeviceKindNames{{{DeviceKind::CPU, "cpu"}, {DeviceKind::CUDA, "cuda"}}};
enum class Precision { FP32, BF16 };
inline constexpr EnumNames<Precision, 2> kPrecisionNames{{{Precision::FP32, "fp32"}, {Precision::BF16, "bf16"}}};
enum class ResumeMode { Never, Auto };
inline constexpr EnumNames<ResumeMode, 2> kResumeModeNames{{{ResumeMode::Never, "never"}, {ResumeMode::Auto, "auto"}}};
enum class LogLevel { Debug, Info, Warn, Error };  // common/train/log.h
inline constexpr EnumNames<LogLevel, 4> kLogLevelNames{{{LogLevel::Debug, "debug"}, {LogLevel::Info, "info"},
                                                        {LogLevel::Warn, "warn"}, {LogLevel::Error, "error"}}};
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
  bool packing = true;             // SFT and DPO: micro-batches packed padding-free (batch.h)
  int64_t max_tokens_per_micro_batch = 0;  // with packing (SFT): micro-batches by tokens, 0 = by rows
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
  std::string train, eval;      // HDF5 files from rlhf_prep (a stage may add its own data.* keys)
  int64_t max_seq_len = 0;      // 0 = model.max_seq_len
};

struct DistSection {
  double bucket_mb = 25.0;
  // ZeRO (train/zero.h): 0 = every rank holds everything; 1 = AdamW moments sharded over ranks;
  // 2 = + gradients; 3 = + the transformer blocks' parameters (needs activation checkpointing).
  int64_t zero_stage = 0;
};

// A stage's own section (ppo.*, dpo.*, rm.*), declared by the stage (<stage>/<stage>_config.h)
// and held by Config; the stage reads it back with its accessor (ppo_section(cfg), ...).
struct StageSection {
  virtual ~StageSection() = default;
  virtual std::unique_ptr<StageSection> clone() const = 0;
};

// Config's copyable holder of its stage's section (a copy of the Config copies the section).
class SectionBox {
 public:
  SectionBox() = default;
  explicit SectionBox(std::unique_ptr<StageSection> s) : s_(std::move(s)) {}
  SectionBox(const SectionBox& o) : s_(o.s_ ? o.s_->clone() : nullptr) {}
  SectionBox& operator=(const SectionBox& o) {
    if (this != &o) s_ = o.s_ ? o.s_->clone() : nullptr;
    return *this;
  }
  SectionBox(SectionBox&&) = default;
  SectionBox& operator=(SectionBox&&) = default;
  StageSection* get() const { return s_.get(); }

 private:
  std::unique_ptr<StageSection> s_;
};

struct StageSpec;  // stage_spec.h: what common code needs to know of a stage

struct Config {
  const StageSpec* stage = nullptr;  // set by parse_config (the stage's spec outlives every Config)
  RunSection run;
  ModelConfig model;
  LoraOptions lora;                // model.lora.*: adapters on the trained models (lora.h)
  std::string tokenizer = "byte";  // spec for load_tokenizer (ignored when init has one)
  std::string init;             // "" = from scratch; else checkpoint (native dir/.h5)
  TrainSection train;
  CkptSection ckpt;
  DataSection data;
  DistSection dist;
  SectionBox section;           // the stage's own keys (StageSpec::new_section); empty for SFT
};

// The stage's section as its type S (the stage's accessors use this); throws when the Config
// belongs to another stage.
template <class S>
S& section_as(Config& cfg, const char* stage) {
  auto* s = dynamic_cast<S*>(cfg.section.get());
  RLHF_CHECK(s != nullptr, "config: the {} section was asked of a config that has none (another stage's)", stage);
  return *s;
}
template <class S>
const S& section_as(const Config& cfg, const char* stage) {
  return section_as<S>(const_cast<Config&>(cfg), stage);
}

// The name of cfg's stage ("ppo"), "" when unset.
std::string stage_name(const Config& cfg);

// file may be "" (defaults only). `sets` are "a.b=value" strings.
Config load_config(const StageSpec& stage, const std::string& file, const std::vector<std::string>& sets);
// Parse from text (used by tests and by resume); `origin` names the text in errors.
Config parse_config(const StageSpec& stage, const std::string& yaml_text, const std::string& origin,
                    const std::vector<std::string>& sets = {});
std::string dump_config(const Config& cfg);
// All valid keys for a stage (full paths), for docs and suggestions.
std::vector<std::string> config_keys(const StageSpec& stage);

// Keys that were given a non-default value but have no effect in this configuration, one
// sentence each (printed as warnings at start): model architecture keys and `tokenizer` when
// `init` is set (the checkpoint fixes them; model.dropout and model.activation_checkpointing
// still apply).
std::vector<std::string> ineffective_keys(const Config& cfg);

// Edit distance used for "did you mean" suggestions.
size_t edit_distance(const std::string& a, const std::string& b);

}  // namespace rlhf
