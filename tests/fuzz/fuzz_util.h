// fuzz_util.h — shared pieces of the libFuzzer targets in tests/fuzz (see README.md there).
//
// Contract of every target: for any input bytes, the code under test either succeeds or throws
// rlhf::Error (the clear, named error a user sees). Any other outcome is a finding: another
// exception type escaping (a raw library error with no file or key named), a crash, a sanitizer
// report (ASan / UBSan), a hang (libFuzzer -timeout) or unbounded memory (-rss_limit_mb).
#pragma once
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "common/core/check.h"

namespace rlhf::fuzz {

// A per-process scratch directory (tmpfs when there is one): parsers that read files get the
// input through a real file, as users' files reach them.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    const std::string base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string d = base + "/rlhf_fuzz_" + std::to_string(getpid());
    mkdir(d.c_str(), 0700);
    return d;
  }();
  return dir;
}

inline std::string write_scratch(const std::string& name, const void* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) __builtin_trap();  // the harness itself is broken
  if (size > 0) std::fwrite(data, 1, size, f);
  std::fclose(f);
  return path;
}

inline std::string write_scratch(const std::string& name, const std::string& text) {
  return write_scratch(name, text.data(), text.size());
}

// Runs f; rlhf::Error is the expected answer to bad input, anything else propagates to libFuzzer.
template <class F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const rlhf::Error&) {
  }
}

}  // namespace rlhf::fuzz
