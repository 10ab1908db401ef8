#include "common/io/checkpoint.h"

#include <yaml-cpp/yaml.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <fstream>
#include <regex>
#include <sstream>

#include "common/core/check.h"
#include "common/core/h5.h"
#include "common/core/fs.h"

namespace fs = std::filesystem;

namespace rlhf {

CheckpointManager::CheckpointManager(std::string run_dir, int64_t keep_last, Communicator& comm)
    : run_dir_(std::move(run_dir)), root_(run_dir_ + "/checkpoints"), keep_last_(keep_last),
      comm_(comm) {}

static std::vector<std::pair<int64_t, std::string>> list_steps(const std::string& root) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  static const std::regex re("step_([0-9]+)");
  for (const auto& e : fs::directory_iterator(root, ec)) {
    std::smatch m;
    std::string name = e.path().filename().string();
    if (e.is_directory() && std::regex_match(name, m, re)) out.emplace_back(std::stoll(m[1]), name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string CheckpointManager::save(int64_t step,
                                    const std::function<void(const std::string&)>& write) {
  const std::string name = fmt::format("step_{:08d}", step);
  const std::string final_dir = root_ + "/" + name;
  std::string err;
  if (comm_.is_root()) {
    try {
      fs::create_directories(root_);
      const std::string tmp = root_ + "/.tmp-" + name;
      fs::remove_all(tmp);
      fs::create_directories(tmp);
      write(tmp);
      fsync_tree(tmp);            // every byte on disk before the directory gets its name
      fs::remove_all(final_dir);  // re-saving the same step (e.g. end of a resumed run)
      fs::rename(tmp, final_dir);
      fsync_path(root_);          // the rename itself is durable
      validate(final_dir);        // re-read before `latest` names it and anything older goes
      write_file_atomic(root_ + "/latest", name + "\n");  // fsync'd, then its directory
      // Retention: of the steps up to this one, the keep_last newest stay; newer steps (from a
      // run resumed at an older checkpoint) are never deleted.
      std::vector<std::string> older;
      for (const auto& s : list_steps(root_))
        if (s.first < step) older.push_back(s.second);
      const int64_t drop = static_cast<int64_t>(older.size()) - (std::max<int64_t>(keep_last_, 1) - 1);
      for (int64_t i = 0; i < drop; ++i) fs::remove_all(root_ + "/" + older[i]);
    } catch (const std::exception& e) {
      err = e.what();
      std::error_code ec;
      fs::remove_all(root_ + "/.tmp-" + name, ec);  // a failed save leaves nothing behind
    }
  }
  // Every rank learns whether the save worked, so none runs ahead or hangs.
  err = comm_.broadcast_string(err);
  RLHF_CHECK(err.empty(), "checkpoint save at step {} failed: {}", step, err);
  return final_dir;
}

void CheckpointManager::validate(const std::string& dir) {
  RLHF_CHECK(fs::is_directory(dir), "checkpoint '{}' does not exist or is not a directory", dir);
  for (const char* f : {"model.h5", "optim.h5", "state.yaml"})
    RLHF_CHECK(fs::exists(dir + "/" + f), "checkpoint '{}' is incomplete: {} is missing", dir, f);
  read_state_yaml(dir + "/state.yaml");
  H5File::open_read(dir + "/model.h5");
  H5File::open_read(dir + "/optim.h5");
}

std::string CheckpointManager::find_latest() const {
  std::string found, err;
  if (comm_.is_root()) {
    try {
      found = newest_checkpoint();
    } catch (const std::exception& e) {
      err = e.what();
    }
  }
  err = comm_.broadcast_string(err);
  RLHF_CHECK(err.empty(), "{}", err);
  return comm_.broadcast_string(found);
}

// The checkpoint `latest` names (it must be a step_N directory of this run), else — no `latest`
// yet — the newest step_N directory; "" when there is none. An unreadable one is an error that
// lists the readable older ones; nothing is skipped silently and nothing deleted.
std::string CheckpointManager::newest_checkpoint() const {
  static const std::regex step_name("step_[0-9]+");
  const auto steps = list_steps(root_);
  std::string name;
  if (fs::exists(root_ + "/latest")) {
    std::ifstream in(root_ + "/latest");
    std::getline(in, name);
    RLHF_CHECK(std::regex_match(name, step_name),
               "{}/latest names '{}', not a step_N checkpoint of this run (corrupt?); resume "
               "explicitly with --resume-from {}/step_N", root_, name, root_);
    RLHF_CHECK(fs::is_directory(root_ + "/" + name), "{}/latest names {}, which does not exist",
               root_, name);
    for (const auto& s : steps)
      if (s.second > name)
        std::cerr << fmt::format("# {}/{} is newer than `latest` ({}) but was never named by it "
                                 "(a save interrupted before it finished): not resumed from\n",
                                 root_, s.second, name);
  } else if (!steps.empty()) {
    name = steps.back().second;
  }
  if (name.empty()) return "";
  const std::string dir = root_ + "/" + name;
  try {
    validate(dir);
  } catch (const std::exception& e) {
    std::string older;
    for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
      if (it->second >= name) continue;
      try {
        validate(root_ + "/" + it->second);
        older += (older.empty() ? "" : ", ") + root_ + "/" + it->second;
      } catch (const std::exception&) {
      }
    }
    throw Error(fmt::format("cannot resume: the newest checkpoint {} is unreadable: {}. Nothing "
                            "was deleted. {}", dir, e.what(),
                            older.empty() ? "No older readable checkpoint exists; start fresh "
                                            "without --resume (and move the run directory away)."
                                          : "To resume from an older one, pass --resume-from DIR "
                                            "(readable: " + older + ")."));
  }
  return dir;
}

// ---- state.yaml -------------------------------------------------------------------

// state.yaml is written as JSON (every JSON document is YAML 1.2, so it reads as YAML too): typed
// values, exact doubles (shortest round-trip form), no guessing. Files written before this
// change hold block YAML from yaml-cpp; read_state_yaml falls back to legacy_from_yaml for them.
static nlohmann::json legacy_from_yaml(const YAML::Node& n) {
  if (n.IsMap()) {
    nlohmann::json j = nlohmann::json::object();
    for (auto it = n.begin(); it != n.end(); ++it) j[it->first.as<std::string>()] = legacy_from_yaml(it->second);
    return j;
  }
  if (n.IsSequence()) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& v : n) j.push_back(legacy_from_yaml(v));
    return j;
  }
  if (n.IsNull()) return nullptr;
  const std::string s = n.Scalar();
  if (n.Tag() == "!") return s;  // quoted
  try {
    size_t pos = 0;
    long long v = std::stoll(s, &pos);
    if (pos == s.size()) return static_cast<int64_t>(v);
  } catch (...) {
  }
  try {
    size_t pos = 0;
    double v = std::stod(s, &pos);
    if (pos == s.size()) return v;
  } catch (...) {
  }
  if (s == "true") return true;
  if (s == "false") return false;
  return s;
}

void write_state_yaml(const std::string& path, const nlohmann::json& state) {
  RLHF_CHECK(state.is_object(), "{}: checkpoint state must be a JSON object", path);
  write_file_atomic(path, state.dump(2) + "\n");
}

nlohmann::json read_state_yaml(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  RLHF_CHECK(in.good(), "checkpoint state file not found: {}", path);
  std::stringstream text;
  text << in.rdbuf();
  const std::string body = text.str();
  const size_t first = body.find_first_not_of(" \t\r\n");
  nlohmann::json j;
  if (first != std::string::npos && body[first] == '{') {
    try {
      j = nlohmann::json::parse(body);
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("{}: corrupt checkpoint state: {}", path, e.what()));
    }
  } else {
    try {  // a state.yaml from before the JSON form
      YAML::Node n = YAML::Load(body);
      j = legacy_from_yaml(n);
    } catch (const YAML::ParserException& e) {
      throw Error(fmt::format("{}:{}:{}: corrupt checkpoint state: {}", path, e.mark.line + 1,
                              e.mark.column + 1, e.msg));
    }
  }
  RLHF_CHECK(j.is_object() && j.contains("step"), "{}: not a checkpoint state file (no 'step')",
             path);
  validate_state(j, path);
  return j;
}

void validate_state(const nlohmann::json& j, const std::string& path) {
  auto count = [&](const nlohmann::json& v, const std::string& key, int64_t lo) {
    RLHF_CHECK(v.is_number_integer() && v.get<int64_t>() >= lo && v.get<int64_t>() <= (int64_t{1} << 50),
               "{}: '{}' must be an integer >= {}, got {}", path, key, lo, v.dump());
  };
  count(j.at("step"), "step", 0);
  if (j.contains("world_size")) count(j["world_size"], "world_size", 1);
  if (j.contains("cursor")) {
    const nlohmann::json& c = j["cursor"];
    RLHF_CHECK(c.is_object() && c.contains("epoch") && c.contains("position"),
               "{}: 'cursor' must be {{\"epoch\", \"position\"}}, got {}", path, c.dump());
    count(c["epoch"], "cursor.epoch", 0);
    count(c["position"], "cursor.position", 0);
  }
  if (j.contains("kl_coef"))
    RLHF_CHECK(j["kl_coef"].is_number() && std::isfinite(j["kl_coef"].get<double>()) && j["kl_coef"].get<double>() >= 0,
               "{}: 'kl_coef' must be a finite number >= 0, got {}", path, j["kl_coef"].dump());
  if (j.contains("config"))
    RLHF_CHECK(j["config"].is_string(), "{}: 'config' must be a string", path);
}

torch::Tensor get_rng_state() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_rng_state(const torch::Tensor& state) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

torch::Tensor get_device_rng_state(const torch::Device& dev) {
  RLHF_CHECK(dev.is_cuda(), "get_device_rng_state: {} has no device generator state", dev.str());
  at::Generator gen = at::globalContext().defaultGenerator(dev);
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_device_rng_state(const torch::Device& dev, const torch::Tensor& state) {
  RLHF_CHECK(dev.is_cuda(), "set_device_rng_state: {} has no device generator state", dev.str());
  at::Generator gen = at::globalContext().defaultGenerator(dev);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

}  // namespace rlhf
