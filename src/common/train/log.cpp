#include "common/train/log.h"

#include <chrono>
#include <ctime>
#include <fstream>
#include <iostream>
#include <mutex>

namespace rlhf {

namespace {
struct LogState {
  std::mutex mu;
  LogLevel level = LogLevel::Info;
  int rank = 0;
  std::ofstream file;
};
LogState& state() {
  static LogState s;
  return s;
}
const char* level_tag(LogLevel l) {
  switch (l) {
    case LogLevel::Debug: return "DEBUG";
    case LogLevel::Info: return "INFO ";
    case LogLevel::Warn: return "WARN ";
    case LogLevel::Error: return "ERROR";
  }
  return "?";
}
}  // namespace

void log_setup(LogLevel level, int rank, const std::string& file) {
  LogState& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.level = level;
  s.rank = rank;
  if (s.file.is_open()) s.file.close();
  if (!file.empty() && rank == 0) {
    s.file.open(file, std::ios::app);
    RLHF_CHECK(s.file.good(), "cannot open the run log '{}' for appending", file);
  }
}

bool log_enabled(LogLevel level) {
  const LogState& s = state();
  return level >= s.level && (s.rank == 0 || level >= LogLevel::Warn);
}

std::string log_prefix(LogLevel level) {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const std::time_t t = system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  const auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  return fmt::format("{}.{:03d} [rank {}] {}", buf, static_cast<int>(ms), state().rank, level_tag(level));
}

void log_line(LogLevel level, const std::string& text) {
  if (!log_enabled(level)) return;
  LogState& s = state();
  const std::string line = log_prefix(level) + " " + text + "\n";
  std::lock_guard<std::mutex> lock(s.mu);
  std::cerr << line << std::flush;
  if (s.file.is_open()) s.file << line << std::flush;
}

void log_file_only(LogLevel level, const std::string& text) {
  LogState& s = state();
  if (!log_enabled(level) || !s.file.is_open()) return;
  const std::string line = log_prefix(level) + " " + text + "\n";
  std::lock_guard<std::mutex> lock(s.mu);
  s.file << line << std::flush;
}

}  // namespace rlhf
