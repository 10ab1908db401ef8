#include "common/train/config.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <functional>
#include <limits>
#include <sstream>

namespace rlhf {

std::string stage_name(Stage s) { return kStageNames.name(s); }

std::vector<std::string> ineffective_keys(const Config& cfg, Stage stage) {
  std::vector<std::string> out;
  const Config defaults;
  if (!cfg.init.empty()) {
    nlohmann::json given = cfg.model.to_json(), base = defaults.model.to_json();
    for (const char* still_used : {"dropout", "activation_checkpointing"}) {
      given.erase(still_used);
      base.erase(still_used);
    }
    for (auto& [k, v] : given.items())
      if (v != base[k])
        out.push_back(fmt::format("model.{} = {} has no effect: init '{}' fixes the architecture "
                                  "(only model.dropout, model.activation_checkpointing and model.lora.* apply)",
                                  k, v.dump(), cfg.init));
    if (cfg.tokenizer != defaults.tokenizer)
      out.push_back(fmt::format("tokenizer = '{}' has no effect: init '{}' carries its tokenizer",
                                cfg.tokenizer, cfg.init));
  }
  return out;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// One schema entry: how to read a scalar into the typed field and how to write it back.
struct Field {
  std::string path;
  std::string expected;  // human description for errors
  std::function<void(const YAML::Node&, const std::string& where)> set;
  std::function<YAML::Node()> get;
};

std::string scalar_text(const YAML::Node& n) {
  return n.IsScalar() ? n.Scalar() : (n.IsMap() ? std::string("a mapping") : std::string("a list"));
}

[[noreturn]] void bad_value(const std::string& where, const std::string& path, const YAML::Node& n,
                            const std::string& expected) {
  throw ConfigError(fmt::format("{}: {} = '{}': expected {}", where, path, scalar_text(n), expected));
}

std::string expand_env(const std::string& s, const std::string& where, const std::string& path) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '$' && i + 1 < s.size() && s[i + 1] == '{') {
      size_t end = s.find('}', i);
      if (end == std::string::npos)
        throw ConfigError(fmt::format("{}: {} = '{}': unterminated ${{...}}", where, path, s));
      std::string body = s.substr(i + 2, end - i - 2);
      std::string name = body, def;
      bool has_def = false;
      size_t d = body.find(":-");
      if (d != std::string::npos) {
        name = body.substr(0, d);
        def = body.substr(d + 2);
        has_def = true;
      }
      const char* v = std::getenv(name.c_str());
      if (v && *v) {
        out += v;
      } else if (has_def) {
        out += def;
      } else {
        throw ConfigError(fmt::format("{}: {} = '{}': environment variable {} is not set (use "
                                      "${{{}:-default}})", where, path, s, name, name));
      }
      i = end;
    } else {
      out += s[i];
    }
  }
  return out;
}

void add_int(std::vector<Field>& fs, const std::string& path, int64_t* p, int64_t lo, int64_t hi) {
  std::string expected = hi == std::numeric_limits<int64_t>::max()
                             ? fmt::format("an integer >= {}", lo)
                             : fmt::format("an integer in [{}, {}]", lo, hi);
  fs.push_back({path, expected,
                [=](const YAML::Node& n, const std::string& where) {
                  int64_t v = 0;
                  try {
                    if (!n.IsScalar()) throw YAML::Exception(YAML::Mark::null_mark(), "");
                    // Accept 1e3-style integers, reject 2.5.
                    double d = n.as<double>();
                    if (d != std::floor(d) || std::fabs(d) > 9.0e15) throw YAML::Exception(YAML::Mark::null_mark(), "");
                    v = static_cast<int64_t>(d);
                  } catch (const YAML::Exception&) {
                    bad_value(where, path, n, expected);
                  }
                  if (v < lo || v > hi) bad_value(where, path, n, expected);
                  *p = v;
                },
                [=]() { return YAML::Node(*p); }});
}

void add_double(std::vector<Field>& fs, const std::string& path, double* p, double lo, double hi,
                bool lo_open = false) {
  std::string expected = fmt::format("a number {} {}{}", lo_open ? ">" : ">=", lo,
                                     hi == kInf ? std::string() : fmt::format(" and <= {}", hi));
  fs.push_back({path, expected,
                [=](const YAML::Node& n, const std::string& where) {
                  double v = 0;
                  try {
                    if (!n.IsScalar()) throw YAML::Exception(YAML::Mark::null_mark(), "");
                    v = n.as<double>();
                  } catch (const YAML::Exception&) {
                    bad_value(where, path, n, expected);
                  }
                  if (!std::isfinite(v) || v < lo || v > hi || (lo_open && v == lo))
                    bad_value(where, path, n, expected);
                  *p = v;
                },
                [=]() { return YAML::Node(*p); }});
}

void add_bool(std::vector<Field>& fs, const std::string& path, bool* p) {
  fs.push_back({path, "true or false",
                [=](const YAML::Node& n, const std::string& where) {
                  try {
                    if (!n.IsScalar()) throw YAML::Exception(YAML::Mark::null_mark(), "");
                    *p = n.as<bool>();
                  } catch (const YAML::Exception&) {
                    bad_value(where, path, n, "true or false");
                  }
                },
                [=]() { return YAML::Node(*p); }});
}

void add_string(std::vector<Field>& fs, const std::string& path, std::string* p) {
  fs.push_back({path, "a string",
                [=](const YAML::Node& n, const std::string& where) {
                  if (n.IsNull()) {
                    *p = "";
                    return;
                  }
                  if (!n.IsScalar()) bad_value(where, path, n, "a string");
                  *p = expand_env(n.Scalar(), where, path);
                },
                [=]() { return YAML::Node(*p); }});
}

template <class E, size_t N>
void add_enum(std::vector<Field>& fs, const std::string& path, E* p, const EnumNames<E, N>& names) {
  std::string expected = "one of " + names.valid();
  fs.push_back({path, expected,
                [=](const YAML::Node& n, const std::string& where) {
                  if (n.IsScalar()) {
                    for (const auto& [v, name] : names.items) {
                      if (n.Scalar() == name) {
                        *p = v;
                        return;
                      }
                    }
                  }
                  bad_value(where, path, n, expected);
                },
                [=]() { return YAML::Node(std::string(names.name(*p))); }});
}

std::vector<Field> schema(Config& c, Stage stage) {
  std::vector<Field> f;
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  add_string(f, "run.dir", &c.run.dir);
  add_int(f, "run.seed", &c.run.seed, 0, kMax);
  add_int(f, "run.log_every", &c.run.log_every, 1, kMax);
  add_bool(f, "run.tensorboard", &c.run.tensorboard);
  add_enum(f, "run.log_level", &c.run.log_level, kLogLevelNames);

  add_enum(f, "model.family", &c.model.family, kFamilyNames);
  add_int(f, "model.vocab_size", &c.model.vocab_size, 1, kMax);
  add_int(f, "model.n_layer", &c.model.n_layer, 1, 1024);
  add_int(f, "model.n_head", &c.model.n_head, 1, 1024);
  add_int(f, "model.n_kv_head", &c.model.n_kv_head, 1, 1024);
  add_int(f, "model.d_model", &c.model.d_model, 1, kMax);
  add_int(f, "model.d_ff", &c.model.d_ff, 1, kMax);
  add_int(f, "model.max_seq_len", &c.model.max_seq_len, 1, kMax);
  add_double(f, "model.norm_eps", &c.model.norm_eps, 0, 1, true);
  add_double(f, "model.rope_theta", &c.model.rope_theta, 0, kInf, true);
  add_double(f, "model.dropout", &c.model.dropout, 0, 0.99);
  add_bool(f, "model.tie_embeddings", &c.model.tie_embeddings);
  add_bool(f, "model.activation_checkpointing", &c.model.activation_checkpointing);
  add_int(f, "model.head_dim_override", &c.model.head_dim_override, 0, 65536);
  add_bool(f, "model.qkv_bias", &c.model.qkv_bias);
  add_bool(f, "model.o_bias", &c.model.o_bias);
  add_bool(f, "model.mlp_bias", &c.model.mlp_bias);
  add_bool(f, "model.qk_norm", &c.model.qk_norm);
  add_int(f, "model.lora.rank", &c.lora.rank, 0, 65536);
  add_double(f, "model.lora.alpha", &c.lora.alpha, 0, kInf, true);
  add_double(f, "model.lora.dropout", &c.lora.dropout, 0, 0.99);
  add_string(f, "model.lora.targets", &c.lora.targets);
  add_string(f, "tokenizer", &c.tokenizer);
  add_string(f, "init", &c.init);

  add_int(f, "train.max_steps", &c.train.max_steps, 1, kMax);
  add_int(f, "train.stop_at_step", &c.train.stop_at_step, 0, kMax);
  add_int(f, "train.max_skipped_steps", &c.train.max_skipped_steps, 0, kMax);
  add_int(f, "train.global_batch_size", &c.train.global_batch_size, 1, kMax);
  add_int(f, "train.micro_batch_size", &c.train.micro_batch_size, 0, kMax);  // 0 = auto (run.cpp)
  add_double(f, "train.learning_rate", &c.train.learning_rate, 0, 10, true);
  add_double(f, "train.min_lr_ratio", &c.train.min_lr_ratio, 0, 1);
  add_int(f, "train.warmup_steps", &c.train.warmup_steps, 0, kMax);
  add_double(f, "train.weight_decay", &c.train.weight_decay, 0, 10);
  add_double(f, "train.beta1", &c.train.beta1, 0, 1);
  add_double(f, "train.beta2", &c.train.beta2, 0, 1);
  add_double(f, "train.adam_eps", &c.train.adam_eps, 0, 1, true);
  add_double(f, "train.grad_clip", &c.train.grad_clip, 0, kInf);
  add_int(f, "train.eval_every", &c.train.eval_every, 0, kMax);
  add_int(f, "train.eval_batches", &c.train.eval_batches, 1, kMax);
  add_enum(f, "train.device", &c.train.device, kDeviceKindNames);
  add_enum(f, "train.precision", &c.train.precision, kPrecisionNames);

  add_int(f, "ckpt.every", &c.ckpt.every, 0, kMax);
  add_int(f, "ckpt.keep_last", &c.ckpt.keep_last, 1, kMax);
  add_enum(f, "ckpt.resume", &c.ckpt.resume, kResumeModeNames);

  add_string(f, "data.train", &c.data.train);
  add_string(f, "data.eval", &c.data.eval);
  add_int(f, "data.max_seq_len", &c.data.max_seq_len, 0, kMax);
  if (stage == Stage::RM || stage == Stage::DPO)  // DPO weights a group's pairs as the RM does
    add_enum(f, "rm.pair_normalizer", &c.rm.pair_normalizer, kPairNormalizerNames);
  if (stage == Stage::RM) add_string(f, "data.bias_data", &c.data.bias_data);
  if (stage == Stage::PPO) {
    add_string(f, "data.pretrain", &c.data.pretrain);
    add_string(f, "data.pretrain_eval", &c.data.pretrain_eval);
  }
  add_double(f, "dist.bucket_mb", &c.dist.bucket_mb, 0, kInf, true);
  add_int(f, "dist.zero_stage", &c.dist.zero_stage, 0, 3);

  if (stage == Stage::PPO) {
    PpoSection& p = c.ppo;
    add_string(f, "ppo.reward_model", &p.reward_model);
    add_enum(f, "ppo.reward", &p.reward, kRewardNames);
    add_string(f, "ppo.reward_rule", &p.reward_rule);
    add_string(f, "ppo.reward_command", &p.reward_command);
    add_double(f, "ppo.reward_timeout_s", &p.reward_timeout_s, 0, kInf, true);
    add_string(f, "ppo.reward_url", &p.reward_url);
    add_int(f, "ppo.reward_retries", &p.reward_retries, 0, 100);
    add_int(f, "ppo.reward_batch_size", &p.reward_batch_size, 1, kMax);
    add_string(f, "ppo.critic_init", &p.critic_init);
    add_int(f, "ppo.ppo_epochs", &p.ppo_epochs, 1, 1000);
    add_int(f, "ppo.minibatch_size", &p.minibatch_size, 0, kMax);
    add_double(f, "ppo.clip_eps", &p.clip_eps, 0, 1, true);
    add_double(f, "ppo.value_clip", &p.value_clip, 0, kInf);
    add_double(f, "ppo.vf_coef", &p.vf_coef, 0, kInf);
    add_double(f, "ppo.critic_learning_rate", &p.critic_learning_rate, 0, 10);
    add_double(f, "ppo.gamma", &p.gamma, 0, 1);
    add_double(f, "ppo.gae_lambda", &p.gae_lambda, 0, 1);
    add_enum(f, "ppo.advantage", &p.advantage, kAdvantageNames);
    add_int(f, "ppo.samples_per_prompt", &p.samples_per_prompt, 1, 1024);
    add_double(f, "ppo.kl_coef", &p.kl_coef, 0, kInf);
    add_bool(f, "ppo.adaptive_kl", &p.adaptive_kl);
    add_double(f, "ppo.kl_target", &p.kl_target, 0, kInf, true);
    add_int(f, "ppo.kl_horizon", &p.kl_horizon, 1, kMax);
    add_enum(f, "ppo.kl_estimator", &p.kl_estimator, kKlEstimatorNames);
    add_bool(f, "ppo.kl_in_loss", &p.kl_in_loss);
    add_enum(f, "ppo.loss_aggregation", &p.loss_aggregation, kLossAggregationNames);
    add_double(f, "ppo.ptx_coef", &p.ptx_coef, 0, kInf);
    add_int(f, "ppo.ptx_batch_size", &p.ptx_batch_size, 1, kMax);
    add_int(f, "ppo.ptx_seq_len", &p.ptx_seq_len, 2, kMax);
    add_int(f, "ppo.max_new_tokens", &p.max_new_tokens, 1, kMax);
    add_double(f, "ppo.temperature", &p.temperature, 0, kInf);
    add_int(f, "ppo.top_k", &p.top_k, 0, kMax);
    add_double(f, "ppo.top_p", &p.top_p, 0, 1, true);
    add_string(f, "ppo.stop_token", &p.stop_token);
    add_double(f, "ppo.no_eos_penalty", &p.no_eos_penalty, 0, kInf);
    add_double(f, "ppo.score_clip", &p.score_clip, 0, kInf);
    add_int(f, "ppo.log_samples_every", &p.log_samples_every, 0, kMax);
    add_enum(f, "ppo.frozen_dtype", &p.frozen_dtype, kPrecisionNames);
    add_bool(f, "ppo.offload_frozen", &p.offload_frozen);
  }
  if (stage == Stage::DPO) {
    add_double(f, "dpo.beta", &c.dpo.beta, 0, kInf, true);
    add_enum(f, "dpo.loss", &c.dpo.loss, kDpoLossNames);
    add_double(f, "dpo.label_smoothing", &c.dpo.label_smoothing, 0, 0.5);
    add_string(f, "dpo.reference", &c.dpo.reference);
    add_bool(f, "dpo.ipo_average", &c.dpo.ipo_average);
  }
  return f;
}

std::string closest_key(const std::string& key, const std::vector<Field>& fields) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& f : fields) {
    size_t d = edit_distance(key, f.path);
    if (d < best_d) {
      best_d = d;
      best = f.path;
    }
  }
  // Only suggest plausible neighbours.
  return best_d <= std::max<size_t>(3, key.size() / 3) ? best : std::string();
}

[[noreturn]] void unknown_key(const std::string& where, const std::string& key,
                              const std::vector<Field>& fields, Stage stage) {
  std::string hint = closest_key(key, fields);
  throw ConfigError(fmt::format("{}: unknown key '{}' for stage {}{}", where, key, stage_name(stage),
                                hint.empty() ? std::string(" (see docs/CONFIG.md for valid keys)")
                                             : fmt::format(" — did you mean '{}'?", hint)));
}

// Sets the fields the YAML names; `given` collects their paths.
void walk(const YAML::Node& node, const std::string& prefix, const std::string& where,
          const std::vector<Field>& fields, Stage stage, std::set<std::string>& given) {
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!it->first.IsScalar())
      throw ConfigError(fmt::format("{}: a key{} is not a plain name (a list or mapping used as a "
                                    "key?)", where, prefix.empty() ? "" : " under '" + prefix + "'"));
    const std::string key = prefix.empty() ? it->first.as<std::string>()
                                           : prefix + "." + it->first.as<std::string>();
    const YAML::Node val = it->second;  // a copy: it->second lives in a temporary
    const Field* field = nullptr;
    for (const auto& f : fields)
      if (f.path == key) field = &f;
    if (field) {
      field->set(val, where);
      given.insert(key);
      continue;
    }
    bool is_section = false;
    for (const auto& f : fields)
      if (f.path.rfind(key + ".", 0) == 0) is_section = true;
    if (is_section) {
      if (!val.IsMap()) {
        if (val.IsNull()) continue;  // an empty section
        throw ConfigError(fmt::format("{}: '{}' is a section and must be a mapping, got '{}'", where,
                                      key, scalar_text(val)));
      }
      walk(val, key, where, fields, stage, given);
      continue;
    }
    unknown_key(where, key, fields, stage);
  }
}

// Apply "a.b.c=value" onto the YAML tree.
void apply_set(YAML::Node& root, const std::string& set, const std::vector<Field>& fields,
               Stage stage) {
  size_t eq = set.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError(fmt::format("--set '{}': expected KEY=VALUE, e.g. train.learning_rate=3e-4", set));
  std::string key = set.substr(0, eq), value = set.substr(eq + 1);
  bool known = false;
  for (const auto& f : fields) known = known || f.path == key;
  if (!known) unknown_key("--set", key, fields, stage);
  std::vector<std::string> parts;
  std::stringstream ss(key);
  for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
  YAML::Node parsed;
  try {
    parsed = YAML::Load(value);
  } catch (const YAML::Exception&) {
    parsed = YAML::Node(value);
  }
  if (value.empty()) parsed = YAML::Node(YAML::NodeType::Null);
  std::function<void(YAML::Node, size_t)> put = [&](YAML::Node n, size_t i) {
    if (i + 1 == parts.size()) {
      n[parts[i]] = parsed;
      return;
    }
    if (!n[parts[i]] || !n[parts[i]].IsMap()) n[parts[i]] = YAML::Node(YAML::NodeType::Map);
    put(n[parts[i]], i + 1);
  };
  put(root, 0);
}

}  // namespace

// PPO defaults that depend on other keys, resolved once here (dump_config then writes them out):
// ppo.kl_estimator is k2 with ppo.kl_in_loss, and k1 is refused there; ppo.loss_aggregation is
// seq_mean_token_sum_norm with ppo.advantage: dr_grpo.
static void resolve_ppo_defaults(PpoSection& p, const std::set<std::string>& given, const std::string& origin) {
  if (p.kl_in_loss && !given.count("ppo.kl_estimator")) p.kl_estimator = KlEstimatorKind::K2;
  if (p.kl_in_loss && p.kl_estimator == KlEstimatorKind::K1)
    throw ConfigError(fmt::format(
        "{}: ppo.kl_estimator: k1 with ppo.kl_in_loss: true: in the loss, k1 = log(pi/pi_ref) has an "
        "expected gradient of exactly zero (E_pi[grad log pi] = 0), so it adds only noise and never "
        "pulls the policy to the reference; use k2 (its expected gradient is the reverse KL's; the "
        "default) or k3, or set ppo.kl_in_loss: false to keep k1 in the reward", origin));
  if (p.advantage == AdvantageKind::DrGrpo && !given.count("ppo.loss_aggregation"))
    p.loss_aggregation = LossAggregation::SeqMeanTokenSumNorm;
}

// YAML leaves a repeated key to the reader (yaml-cpp keeps both; lookups see the first): a
// config that sets a key twice is an error naming it and its line, never "last one wins".
static void reject_duplicate_keys(const YAML::Node& n, const std::string& prefix, const std::string& origin) {
  if (!n.IsMap()) return;
  std::set<std::string> seen;
  for (auto it = n.begin(); it != n.end(); ++it) {
    const std::string key = it->first.Scalar();
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    if (!seen.insert(key).second)
      throw ConfigError(fmt::format("{}:{}: key '{}' is set twice (remove one)", origin,
                                    it->first.Mark().line + 1, path));
    reject_duplicate_keys(it->second, path, origin);
  }
}

Config parse_config(Stage stage, const std::string& yaml_text, const std::string& origin,
                    const std::vector<std::string>& sets) {
  Config cfg;
  cfg.stage = stage;
  std::vector<Field> fields = schema(cfg, stage);
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(fmt::format("{}:{}:{}: malformed YAML: {}", origin, e.mark.line + 1,
                                  e.mark.column + 1, e.msg));
  }
  if (!root || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap())
    throw ConfigError(fmt::format("{}: the top level must be a mapping of sections (run:, train:, ...)", origin));
  reject_duplicate_keys(root, "", origin);
  std::set<std::string> given;  // keys the file or --set name (the rest keep their defaults)
  walk(root, "", origin, fields, stage, given);
  YAML::Node overrides(YAML::NodeType::Map);
  for (const auto& s : sets) apply_set(overrides, s, fields, stage);
  walk(overrides, "", "--set", fields, stage, given);
  if (stage == Stage::PPO) resolve_ppo_defaults(cfg.ppo, given, origin);

  // Cross-field checks.
  try {
    cfg.model.validate();
  } catch (const Error& e) {
    throw ConfigError(fmt::format("{}: model: {}", origin, e.what()));
  }
  if (cfg.dist.zero_stage == 3 && !cfg.model.activation_checkpointing)
    throw ConfigError(fmt::format(
        "{}: dist.zero_stage = 3 needs model.activation_checkpointing: true (stage 3 gathers a "
        "block's sharded parameters again for its backward, which only the recomputing "
        "checkpointed blocks do); set it, or use dist.zero_stage: 2", origin));
  return cfg;
}

Config load_config(Stage stage, const std::string& file, const std::vector<std::string>& sets) {
  std::string text;
  if (!file.empty()) {
    if (std::filesystem::is_directory(file))
      throw ConfigError(fmt::format("--config {} is a directory; give a YAML file (e.g. {}/sft.yaml)",
                                    file, file));
    std::ifstream in(file);
    if (!in) throw ConfigError(fmt::format("config file not found or unreadable: {}", file));
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  return parse_config(stage, text, file.empty() ? std::string("<defaults>") : file, sets);
}

std::string dump_config(const Config& c_in) {
  Config c = c_in;
  std::vector<Field> fields = schema(c, c.stage);
  YAML::Node root(YAML::NodeType::Map);
  for (const auto& f : fields) {
    std::vector<std::string> parts;
    std::stringstream ss(f.path);
    for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
    YAML::Node node = root;  // walk down the sections (model.lora.rank: two levels)
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      YAML::Node child = node[parts[i]];
      node.reset(child);
    }
    node[parts.back()] = f.get();
  }
  YAML::Emitter out;
  out << root;
  return std::string(out.c_str()) + "\n";
}

std::vector<std::string> config_keys(Stage stage) {
  Config c;
  std::vector<std::string> out;
  for (const auto& f : schema(c, stage)) out.push_back(f.path);
  return out;
}

}  // namespace rlhf
