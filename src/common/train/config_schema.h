// config_schema.h — how a config key is declared: its full path, the typed field it fills and the
// values it accepts. common/train/config.cpp declares the sections every stage has (run, model,
// train, data, ckpt, dist); each stage declares its own section's keys in <stage>/<stage>_config.cpp
// through its StageSpec (stage_spec.h), with the same calls.
//
// Contract: a field reads one YAML scalar into the bound variable or throws ConfigError naming the
// place (file or --set), the key, the value and what was expected; `get` writes the variable back
// (dump_config). Bound pointers must outlive the Schema (they point into the Config being parsed).
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "common/core/strings.h"

namespace YAML {
class Node;
}

namespace rlhf {

struct ConfigField {
  std::string path;      // "ppo.clip_eps"
  std::string expected;  // for errors: "a number > 0 and <= 1"
  std::function<void(const YAML::Node&, const std::string& where)> set;
  std::function<YAML::Node()> get;
};

// A YAML node as error text: its scalar, or "a mapping" / "a list".
std::string yaml_scalar_text(const YAML::Node& n);

class Schema {
 public:
  static constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  static constexpr double kInf = std::numeric_limits<double>::infinity();

  void add_int(const std::string& path, int64_t* p, int64_t lo, int64_t hi = kMax);
  // [lo, hi], or (lo, hi] with lo_open; finite values only.
  void add_double(const std::string& path, double* p, double lo, double hi = kInf, bool lo_open = false);
  void add_bool(const std::string& path, bool* p);
  void add_string(const std::string& path, std::string* p);  // ${VAR} / ${VAR:-default} expanded
  template <class E, size_t N>
  void add_enum(const std::string& path, E* p, const EnumNames<E, N>& names) {
    std::vector<std::string> valid;
    for (const auto& item : names.items) valid.push_back(item.second);
    add_choice(path, valid, names.valid(), [p, names](size_t i) { *p = names.items[i].first; },
               [p, names] {
                 for (size_t i = 0; i < N; ++i)
                   if (names.items[i].first == *p) return i;
                 return size_t{0};
               });
  }

  const std::vector<ConfigField>& fields() const { return fields_; }

 private:
  void add_choice(const std::string& path, const std::vector<std::string>& valid, const std::string& listed,
                  std::function<void(size_t)> set, std::function<size_t()> get);
  std::vector<ConfigField> fields_;
};

}  // namespace rlhf
