#include "common/train/metrics.h"

#include <unistd.h>

#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "common/core/check.h"
#include "common/core/fs.h"
#include "common/train/log.h"
#include "common/train/samples.h"
#include "common/train/tensorboard.h"

namespace rlhf {

int64_t drop_metrics_after(const std::string& run_dir, int64_t step) {
  return drop_jsonl_after(run_dir + "/metrics.jsonl", step);
}

MetricsLogger::MetricsLogger(const std::string& run_dir, bool is_root, int64_t total_steps,
                             int64_t log_every, bool append, bool tensorboard)
    : dir_(run_dir), root_(is_root), total_(total_steps), every_(std::max<int64_t>(1, log_every)),
      tty_(isatty(STDERR_FILENO)), start_(std::chrono::steady_clock::now()) {
  if (!root_) return;
  std::filesystem::create_directories(dir_);
  out_.open(dir_ + "/metrics.jsonl", append ? std::ios::app : std::ios::trunc);
  RLHF_CHECK(out_.good(), "cannot open '{}/metrics.jsonl' for writing", dir_);
  if (!append) remove_event_files(dir_ + "/tb");
  if (tensorboard) tb_ = std::make_unique<EventWriter>(dir_ + "/tb");
}

static void add_scalars(const std::string& prefix, const nlohmann::json& j,
                        std::vector<std::pair<std::string, float>>& out) {
  for (const auto& [k, v] : j.items()) {
    const std::string tag = prefix.empty() ? k : prefix + "/" + k;
    if (v.is_number() || v.is_boolean())
      out.emplace_back(tag, v.is_boolean() ? float(v.get<bool>()) : v.get<float>());
    else if (v.is_object())
      add_scalars(tag, v, out);
  }
}

std::vector<std::pair<std::string, float>> row_scalars(const nlohmann::json& row) {
  std::vector<std::pair<std::string, float>> out;
  nlohmann::json rest = row;
  rest.erase("step");
  add_scalars("", rest, out);
  return out;
}

MetricsLogger::~MetricsLogger() {
  if (root_ && line_open_) std::cerr << std::endl;
}

static std::string fmt_eta(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  int64_t t = static_cast<int64_t>(s + 0.5);
  return t >= 3600 ? fmt::format("{}h{:02}m", t / 3600, (t / 60) % 60)
                   : fmt::format("{}m{:02}s", t / 60, t % 60);
}

void MetricsLogger::progress(int64_t step, double loss, double tps) {
  auto now = std::chrono::steady_clock::now();
  if (first_step_ < 0) {
    first_step_ = step - 1;
    start_ = now;
  }
  double elapsed = std::chrono::duration<double>(now - start_).count();
  double per_step = elapsed / std::max<int64_t>(1, step - first_step_);
  std::string line = fmt::format("step {}/{} | loss {:.4f} | {:.0f} tok/s | ETA {}", step, total_,
                                 loss, tps, fmt_eta(per_step * (total_ - step)));
  if (tty_) {
    std::cerr << "\r\033[K" << line << std::flush;
    line_open_ = true;
    if (step >= total_) {
      std::cerr << std::endl;
      line_open_ = false;
    }
    if (step % every_ == 0 || step == total_ || step == first_step_ + 1) log_file_only(LogLevel::Info, line);
  } else if (step % every_ == 0 || step == total_ || step == first_step_ + 1) {
    log_line(LogLevel::Info, line);
  }
}

void MetricsLogger::log(const nlohmann::json& row) {
  if (!root_) return;
  RLHF_CHECK(row.contains("step"), "metrics row without 'step'");
  out_ << row.dump() << "\n";
  out_.flush();
  RLHF_CHECK(out_.good(), "cannot append to '{}/metrics.jsonl': {}", dir_, std::strerror(errno));
  if (tb_) tb_->scalars(row["step"].get<int64_t>(), row_scalars(row));
  double loss = row.contains("loss") && row["loss"].is_number() ? row["loss"].get<double>() : NAN;
  double tps = row.contains("tokens_per_s") && row["tokens_per_s"].is_number()
                   ? row["tokens_per_s"].get<double>() : 0.0;
  progress(row["step"].get<int64_t>(), loss, tps);
}

void MetricsLogger::message(const std::string& text) {
  if (!root_) return;
  if (line_open_) {
    std::cerr << std::endl;
    line_open_ = false;
  }
  log_line(LogLevel::Info, text);
}

void MetricsLogger::summary(const nlohmann::json& obj) {
  if (!root_) return;
  write_file_atomic(dir_ + "/summary.json", obj.dump(2) + "\n");
}

}  // namespace rlhf
