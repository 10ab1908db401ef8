#include "common/train/config.h"

#include "common/train/config_schema.h"
#include "common/train/stage_spec.h"

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

std::string stage_name(const Config& cfg) { return cfg.stage ? cfg.stage->name : std::string(); }

std::vector<std::string> ineffective_keys(const Config& cfg) {
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

using Field = ConfigField;

// The keys of every stage, then stage's own (StageSpec::add_keys), bound into c.
std::vector<Field> schema(Config& c, const StageSpec& stage) {
  Schema s;
  constexpr int64_t kMax = Schema::kMax;
  constexpr double kInf = Schema::kInf;
  s.add_string("run.dir", &c.run.dir);
  s.add_int("run.seed", &c.run.seed, 0, kMax);
  s.add_int("run.log_every", &c.run.log_every, 1, kMax);
  s.add_bool("run.tensorboard", &c.run.tensorboard);
  s.add_enum("run.log_level", &c.run.log_level, kLogLevelNames);

  s.add_enum("model.family", &c.model.family, kFamilyNames);
  s.add_int("model.vocab_size", &c.model.vocab_size, 1, kMax);
  s.add_int("model.n_layer", &c.model.n_layer, 1, 1024);
  s.add_int("model.n_head", &c.model.n_head, 1, 1024);
  s.add_int("model.n_kv_head", &c.model.n_kv_head, 1, 1024);
  s.add_int("model.d_model", &c.model.d_model, 1, kMax);
  s.add_int("model.d_ff", &c.model.d_ff, 1, kMax);
  s.add_int("model.max_seq_len", &c.model.max_seq_len, 1, kMax);
  s.add_double("model.norm_eps", &c.model.norm_eps, 0, 1, true);
  s.add_double("model.rope_theta", &c.model.rope_theta, 0, kInf, true);
  s.add_double("model.dropout", &c.model.dropout, 0, 0.99);
  s.add_bool("model.tie_embeddings", &c.model.tie_embeddings);
  s.add_bool("model.activation_checkpointing", &c.model.activation_checkpointing);
  s.add_int("model.head_dim_override", &c.model.head_dim_override, 0, 65536);
  s.add_bool("model.qkv_bias", &c.model.qkv_bias);
  s.add_bool("model.o_bias", &c.model.o_bias);
  s.add_bool("model.mlp_bias", &c.model.mlp_bias);
  s.add_bool("model.qk_norm", &c.model.qk_norm);
  s.add_int("model.lora.rank", &c.lora.rank, 0, 65536);
  s.add_double("model.lora.alpha", &c.lora.alpha, 0, kInf, true);
  s.add_double("model.lora.dropout", &c.lora.dropout, 0, 0.99);
  s.add_string("model.lora.targets", &c.lora.targets);
  s.add_string("tokenizer", &c.tokenizer);
  s.add_string("init", &c.init);

  s.add_int("train.max_steps", &c.train.max_steps, 1, kMax);
  s.add_int("train.stop_at_step", &c.train.stop_at_step, 0, kMax);
  s.add_int("train.max_skipped_steps", &c.train.max_skipped_steps, 0, kMax);
  s.add_int("train.global_batch_size", &c.train.global_batch_size, 1, kMax);
  s.add_int("train.micro_batch_size", &c.train.micro_batch_size, 0, kMax);  // 0 = auto (run.cpp)
  s.add_bool("train.packing", &c.train.packing);
  s.add_int("train.max_tokens_per_micro_batch", &c.train.max_tokens_per_micro_batch, 0, kMax);
  s.add_double("train.learning_rate", &c.train.learning_rate, 0, 10, true);
  s.add_double("train.min_lr_ratio", &c.train.min_lr_ratio, 0, 1);
  s.add_int("train.warmup_steps", &c.train.warmup_steps, 0, kMax);
  s.add_double("train.weight_decay", &c.train.weight_decay, 0, 10);
  s.add_double("train.beta1", &c.train.beta1, 0, 1);
  s.add_double("train.beta2", &c.train.beta2, 0, 1);
  s.add_double("train.adam_eps", &c.train.adam_eps, 0, 1, true);
  s.add_double("train.grad_clip", &c.train.grad_clip, 0, kInf);
  s.add_int("train.eval_every", &c.train.eval_every, 0, kMax);
  s.add_int("train.eval_batches", &c.train.eval_batches, 1, kMax);
  s.add_enum("train.device", &c.train.device, kDeviceKindNames);
  s.add_enum("train.precision", &c.train.precision, kPrecisionNames);

  s.add_int("ckpt.every", &c.ckpt.every, 0, kMax);
  s.add_int("ckpt.keep_last", &c.ckpt.keep_last, 1, kMax);
  s.add_enum("ckpt.resume", &c.ckpt.resume, kResumeModeNames);

  s.add_string("data.train", &c.data.train);
  s.add_string("data.eval", &c.data.eval);
  s.add_int("data.max_seq_len", &c.data.max_seq_len, 0, kMax);
  s.add_double("dist.bucket_mb", &c.dist.bucket_mb, 0, kInf, true);
  s.add_int("dist.zero_stage", &c.dist.zero_stage, 0, 3);

  if (stage.add_keys) stage.add_keys(c, s);
  return s.fields();
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
                              const std::vector<Field>& fields, const StageSpec& stage) {
  std::string hint = closest_key(key, fields);
  throw ConfigError(fmt::format("{}: unknown key '{}' for stage {}{}", where, key, stage.name,
                                hint.empty() ? std::string(" (see docs/CONFIG.md for valid keys)")
                                             : fmt::format(" — did you mean '{}'?", hint)));
}

// Sets the fields the YAML names; `given` collects their paths.
void walk(const YAML::Node& node, const std::string& prefix, const std::string& where,
          const std::vector<Field>& fields, const StageSpec& stage, std::set<std::string>& given) {
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
                                      key, yaml_scalar_text(val)));
      }
      walk(val, key, where, fields, stage, given);
      continue;
    }
    unknown_key(where, key, fields, stage);
  }
}

// Apply "a.b.c=value" onto the YAML tree.
void apply_set(YAML::Node& root, const std::string& set, const std::vector<Field>& fields,
               const StageSpec& stage) {
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

Config parse_config(const StageSpec& stage, const std::string& yaml_text, const std::string& origin,
                    const std::vector<std::string>& sets) {
  Config cfg;
  cfg.stage = &stage;
  if (stage.new_section) cfg.section = SectionBox(stage.new_section());
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
  // Cross-field checks (the stage's after the common ones).
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
  if (stage.resolve) stage.resolve(cfg, given, origin);
  return cfg;
}

Config load_config(const StageSpec& stage, const std::string& file, const std::vector<std::string>& sets) {
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
  RLHF_CHECK(c_in.stage != nullptr, "dump_config: the config has no stage (build it with parse_config)");
  Config c = c_in;
  std::vector<Field> fields = schema(c, *c.stage);
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

std::vector<std::string> config_keys(const StageSpec& stage) {
  Config c;
  if (stage.new_section) c.section = SectionBox(stage.new_section());
  std::vector<std::string> out;
  for (const auto& f : schema(c, stage)) out.push_back(f.path);
  return out;
}

}  // namespace rlhf
