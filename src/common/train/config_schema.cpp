// config_schema.cpp — see config_schema.h.
#include "common/train/config_schema.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdlib>

#include "common/train/config.h"

namespace rlhf {

namespace {

constexpr double kInf = Schema::kInf;


[[noreturn]] void bad_value(const std::string& where, const std::string& path, const YAML::Node& n,
                            const std::string& expected) {
  throw ConfigError(fmt::format("{}: {} = '{}': expected {}", where, path, yaml_scalar_text(n), expected));
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

}  // namespace

std::string yaml_scalar_text(const YAML::Node& n) {
  return n.IsScalar() ? n.Scalar() : (n.IsMap() ? std::string("a mapping") : std::string("a list"));
}

void Schema::add_int(const std::string& path, int64_t* p, int64_t lo, int64_t hi) {
  std::string expected = hi == std::numeric_limits<int64_t>::max()
                             ? fmt::format("an integer >= {}", lo)
                             : fmt::format("an integer in [{}, {}]", lo, hi);
  fields_.push_back({path, expected,
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

void Schema::add_double(const std::string& path, double* p, double lo, double hi, bool lo_open) {
  std::string expected = fmt::format("a number {} {}{}", lo_open ? ">" : ">=", lo,
                                     hi == kInf ? std::string() : fmt::format(" and <= {}", hi));
  fields_.push_back({path, expected,
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

void Schema::add_bool(const std::string& path, bool* p) {
  fields_.push_back({path, "true or false",
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

void Schema::add_string(const std::string& path, std::string* p) {
  fields_.push_back({path, "a string",
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

void Schema::add_choice(const std::string& path, const std::vector<std::string>& valid,
                        const std::string& listed, std::function<void(size_t)> set,
                        std::function<size_t()> get) {
  const std::string expected = "one of " + listed;
  fields_.push_back({path, expected,
                     [=](const YAML::Node& n, const std::string& where) {
                       if (n.IsScalar())
                         for (size_t i = 0; i < valid.size(); ++i)
                           if (n.Scalar() == valid[i]) return set(i);
                       bad_value(where, path, n, expected);
                     },
                     [=]() { return YAML::Node(valid[get()]); }});
}

}  // namespace rlhf
