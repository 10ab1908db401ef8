// metrics.h — run directory outputs: metrics.jsonl (one JSON object per step), summary.json,
// and a progress display (one updating line on a terminal, periodic plain lines otherwise).
// With TensorBoard on, every numeric (and boolean, as 0/1) value of a row also goes to
// run.dir/tb/events.out.tfevents.* (tensorboard.h) under its key at the row's step; nested
// objects as key/subkey.
// Contract: construct on every rank; only rank 0 (is_root) writes or prints anything.
#pragma once
#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace rlhf {

// A resumed run continues at `step`: rows of run_dir/metrics.jsonl with a later step (logged
// after that checkpoint by the interrupted run) are dropped, so no step appears twice. Rewrites
// the file atomically; returns how many rows were dropped (0 when there is no file).
int64_t drop_metrics_after(const std::string& run_dir, int64_t step);

// The scalars of a metrics row for TensorBoard: numbers and booleans (0/1) except "step",
// nested objects flattened to "key/subkey"; strings, arrays and nulls are left out.
std::vector<std::pair<std::string, float>> row_scalars(const nlohmann::json& row);

class EventWriter;

class MetricsLogger {
 public:
  // append = true when resuming (keeps earlier steps; later steps replace nothing; TensorBoard
  // gets a new events file, start_run having dropped the later steps from the earlier ones).
  // append = false truncates metrics.jsonl and removes run_dir/tb's earlier events files.
  MetricsLogger(const std::string& run_dir, bool is_root, int64_t total_steps, int64_t log_every,
                bool append, bool tensorboard = false);
  ~MetricsLogger();
  // Writes one line to metrics.jsonl (must contain "step") and updates the progress display
  // from its "loss" and "tokens_per_s" keys when present.
  void log(const nlohmann::json& row);
  void summary(const nlohmann::json& obj);  // run.dir/summary.json (atomic rename)
  void message(const std::string& text);    // a log line on stderr (rank 0), ends the progress line

 private:
  void progress(int64_t step, double loss, double tokens_per_s);
  std::string dir_;
  bool root_;
  int64_t total_, every_;
  bool tty_;
  bool line_open_ = false;
  std::ofstream out_;
  std::unique_ptr<EventWriter> tb_;
  std::chrono::steady_clock::time_point start_;
  int64_t first_step_ = -1;
};

}  // namespace rlhf
