// samples.h — run.dir/samples.jsonl: decoded examples as training goes (PPO rollouts every
// ppo.log_samples_every iterations; SFT/RM held-out examples at each evaluation), one JSON object
// per example with at least "step" and "stage".
// A resumed run drops the rows of steps after its checkpoint (start_run), as for metrics.jsonl.
// Contract: construct on every rank; only rank 0 (is_root) writes; each write is flushed.
#pragma once
#include <cstdint>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

namespace rlhf {

// Rewrites the JSONL file at path without the rows whose integer "step" is greater than step (and
// without a torn, unparsable line). Returns how many rows were dropped (0 when there is no file).
int64_t drop_jsonl_after(const std::string& path, int64_t step);

class SamplesLog {
 public:
  // append = true when resuming; false truncates run_dir/samples.jsonl.
  SamplesLog(const std::string& run_dir, bool is_root, bool append);
  // Rank 0: one line, flushed (invalid UTF-8 in strings becomes U+FFFD); others: nothing.
  void write(const nlohmann::json& row);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool root_;
  std::ofstream out_;
};

}  // namespace rlhf
