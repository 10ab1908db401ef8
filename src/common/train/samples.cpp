#include "common/train/samples.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/core/check.h"
#include "common/core/fs.h"

namespace rlhf {

int64_t drop_jsonl_after(const std::string& path, int64_t step) {
  if (!std::filesystem::exists(path)) return 0;
  std::ifstream in(path, std::ios::binary);
  RLHF_CHECK(in.good(), "cannot read '{}'", path);
  std::string kept, line;
  int64_t dropped = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    nlohmann::json row;
    try {
      row = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      ++dropped;  // a torn last line of a killed run
      continue;
    }
    if (row.is_object() && row.contains("step") && row["step"].is_number_integer() &&
        row["step"].get<int64_t>() > step) {
      ++dropped;
      continue;
    }
    kept += line + "\n";
  }
  if (dropped > 0) write_file_atomic(path, kept);
  return dropped;
}

SamplesLog::SamplesLog(const std::string& run_dir, bool is_root, bool append)
    : path_(run_dir + "/samples.jsonl"), root_(is_root) {
  if (!root_) return;
  std::filesystem::create_directories(run_dir);
  out_.open(path_, append ? std::ios::app : std::ios::trunc);
  RLHF_CHECK(out_.good(), "cannot open '{}' for writing: {}", path_, std::strerror(errno));
}

void SamplesLog::write(const nlohmann::json& row) {
  if (!root_) return;
  RLHF_CHECK(row.contains("step"), "samples row without 'step'");
  // Decoded text of an untrained byte-level model need not be UTF-8: replaced by U+FFFD.
  out_ << row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  out_.flush();
  RLHF_CHECK(out_.good(), "cannot append to '{}': {}", path_, std::strerror(errno));
}

}  // namespace rlhf
