// log.h — the run's log: leveled lines with a UTC timestamp and the rank,
//   2026-12-02 00:33:30.123 [rank 0] INFO  # sft: 1234 params, ...
// to stderr and, once start_run has opened it, to run.dir/train.log (appended; rank 0).
// Rank 0 prints every line at or above run.log_level (default info); the other ranks print
// warnings and errors only (to stderr). Progress lines on a terminal stay a single updating line
// (metrics.h) and reach train.log at the run.log_every cadence; a fatal error of a stage
// executable reaches it through log_errors.
// Contract: any thread may call; lines are written whole (one mutex). Before log_setup the level
// is info, the rank 0 and there is no file.
#pragma once
#include <exception>
#include <string>

#include <fmt/format.h>

#include "common/train/config.h"

namespace rlhf {

// level: the lowest printed; file: "" = stderr only. Called by start_run on every rank.
void log_setup(LogLevel level, int rank, const std::string& file);
bool log_enabled(LogLevel level);  // whether this rank prints lines of this level
void log_line(LogLevel level, const std::string& text);
// A line for run.dir/train.log only (the progress line a terminal shows in place).
void log_file_only(LogLevel level, const std::string& text);
// The prefix of a line: "YYYY-MM-DD HH:MM:SS.mmm [rank R] LEVEL" (exposed for tests).
std::string log_prefix(LogLevel level);

// Runs fn and returns its result; an exception it throws is also written to run.dir/train.log
// (rank 0's file, once start_run has opened it) before it propagates to run_main, which prints it
// on stderr and ends the job. The stage executables run through it.
template <class Fn>
int log_errors(Fn&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    log_file_only(LogLevel::Error, std::string("error: ") + e.what());
    throw;
  }
}

template <class... Args>
void log_debug(fmt::format_string<Args...> f, Args&&... a) {
  if (log_enabled(LogLevel::Debug)) log_line(LogLevel::Debug, fmt::format(f, std::forward<Args>(a)...));
}
template <class... Args>
void log_info(fmt::format_string<Args...> f, Args&&... a) {
  if (log_enabled(LogLevel::Info)) log_line(LogLevel::Info, fmt::format(f, std::forward<Args>(a)...));
}
template <class... Args>
void log_warn(fmt::format_string<Args...> f, Args&&... a) {
  if (log_enabled(LogLevel::Warn)) log_line(LogLevel::Warn, fmt::format(f, std::forward<Args>(a)...));
}
template <class... Args>
void log_error(fmt::format_string<Args...> f, Args&&... a) {
  if (log_enabled(LogLevel::Error)) log_line(LogLevel::Error, fmt::format(f, std::forward<Args>(a)...));
}

}  // namespace rlhf
