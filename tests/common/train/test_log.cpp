// The run log (train/log.h): level filter, rank rule (other ranks: warnings and errors only, no
// file), the line format, and the file written beside stderr.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "common/train/log.h"
#include "support/test_support.h"

namespace rlhf {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct RestoreLog {
  ~RestoreLog() { log_setup(LogLevel::Info, 0, ""); }
};

TEST(Log, LevelsRankAndFile) {
  RestoreLog restore;
  testing::TempDir d("log");
  log_setup(LogLevel::Warn, 0, d.at("train.log"));
  EXPECT_FALSE(log_enabled(LogLevel::Info));
  log_info("hidden {}", 1);
  log_warn("shown {}", 2);
  log_error("also {}", 3);
  log_file_only(LogLevel::Error, "file only");
  std::string text = slurp(d.at("train.log"));
  EXPECT_EQ(text.find("hidden"), std::string::npos);
  const std::regex line(R"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[rank 0\] WARN  shown 2\n)");
  EXPECT_TRUE(std::regex_search(text, line)) << text;
  EXPECT_NE(text.find("[rank 0] ERROR also 3"), std::string::npos) << text;
  EXPECT_NE(text.find("ERROR file only"), std::string::npos) << text;

  log_setup(LogLevel::Debug, 1, d.at("rank1.log"));  // other ranks: no file, warn and above
  EXPECT_FALSE(log_enabled(LogLevel::Info));
  EXPECT_TRUE(log_enabled(LogLevel::Warn));
  log_warn("from rank one");
  EXPECT_FALSE(std::ifstream(d.at("rank1.log")).good());
  EXPECT_NE(log_prefix(LogLevel::Debug).find("[rank 1] DEBUG"), std::string::npos);

  log_setup(LogLevel::Debug, 0, d.at("train.log"));  // appends
  log_debug("debug now");
  text = slurp(d.at("train.log"));
  EXPECT_NE(text.find("shown 2"), std::string::npos);
  EXPECT_NE(text.find("[rank 0] DEBUG debug now"), std::string::npos);
}

}  // namespace
}  // namespace rlhf
