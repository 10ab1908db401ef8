// test_support.h — helpers every test file would otherwise write again: the message of an
// expected rlhf::Error, a self-deleting temporary directory, and the small model configs.
#pragma once
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "common/core/check.h"
#include "common/model/model.h"

namespace rlhf::testing {

// The message of the rlhf::Error (or subclass, e.g. ConfigError) fn throws; a fixed marker when
// it throws none, so EXPECT_NE(msg.find(...), npos) fails with a readable message.
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const rlhf::Error& e) {
    return e.what();
  }
  return "<no rlhf::Error thrown>";
}

// A fresh directory under the system temp dir (mkdtemp), removed with everything in it.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag = "test") {
    std::string tmpl = (std::filesystem::temp_directory_path() / ("rlhf_" + tag + "_XXXXXX")).string();
    const char* d = ::mkdtemp(tmpl.data());
    if (d == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path = d;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string at(const std::string& name) const { return (path / name).string(); }
  // Writes content to path/name (binary) and returns the file's path.
  std::string write(const std::string& name, const std::string& content) const {
    std::ofstream(at(name), std::ios::binary) << content;
    return at(name);
  }
};

// A tiny model config of the given family: 2 layers, 4 heads (`kv` of them for keys/values),
// d_model 32, d_ff 64, vocab 41, context 64.
inline ModelConfig tiny_config(Family f, int64_t kv = 4) {
  ModelConfig c;
  c.family = f;
  c.vocab_size = 41;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = kv;
  c.d_model = 32;
  c.d_ff = 64;
  c.max_seq_len = 64;
  return c;
}

}  // namespace rlhf::testing
