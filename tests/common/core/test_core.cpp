// The core layer's helpers: durable file writes (core/fs.h), the splitmix64 generator
// (core/rng.h), enum name tables and shape strings (core/strings.h), the device parser and the
// rank-sharded loop at one rank (dist/dist.h), and checkpoint state files (io/checkpoint.h).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "common/core/fs.h"
#include "common/core/process.h"
#include "common/core/rng.h"
#include "common/core/strings.h"
#include "common/dist/dist.h"
#include "common/io/checkpoint.h"
#include "support/test_support.h"

namespace fs = std::filesystem;

namespace rlhf {
namespace {

using testing::error_of;
using testing::TempDir;

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Fs, WriteFileAtomicReplacesAndLeavesNoTemporary) {
  TempDir d("fs");
  const std::string p = d.at("a.txt");
  write_file_atomic(p, "first\n");
  write_file_atomic(p, "second\n");
  EXPECT_EQ(read_all(p), "second\n");
  EXPECT_EQ(names_in(d.path), std::vector<std::string>{"a.txt"});
}

TEST(Fs, FailedWriteKeepsThePreviousFileAndRemovesTheTemporary) {
  TempDir d("fs");
  const std::string p = d.at("a.h5");
  write_file_atomic(p, "good");
  std::string msg = error_of([&] {
    replace_file_atomic(p, [](const std::string& tmp) {
      std::ofstream(tmp) << "half";
      throw Error("disk full (simulated)");
    });
  });
  EXPECT_NE(msg.find("disk full (simulated)"), std::string::npos) << msg;
  EXPECT_EQ(read_all(p), "good");
  EXPECT_EQ(names_in(d.path), std::vector<std::string>{"a.h5"});
}

TEST(Fs, ErrorsNameTheFileAndTheCause) {
  TempDir d("fs");
  const std::string p = d.at("no/such/dir/x.txt");
  std::string msg = error_of([&] { write_file_atomic(p, "x"); });
  EXPECT_NE(msg.find(d.at("no/such/dir/x.txt")), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
  msg = error_of([&] { fsync_path(d.at("missing")); });
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
}

// fsync_tree syncs every file (nested too), then every directory deepest first, the root last:
// the sync function is recorded, and the real one runs without error on the same tree.
// One run per directory (issue 32): a second DirLock on a held directory is refused, naming the
// holder; the lock goes with its holder; a lock file whose writer died (content, no flock) is no
// lock.
TEST(Fs, DirLockIsExclusiveAndNamesItsHolder) {
  TempDir d("dirlock");
  const std::string dir = d.path.string();
  {
    DirLock a(dir, "sft_train");
    EXPECT_NE(read_all(d.at(".lock")).find("sft_train, pid " + std::to_string(::getpid()) + " on "), std::string::npos);
    const std::string e = error_of([&] { DirLock b(dir, "ppo_train"); });
    EXPECT_NE(e.find(dir + " is in use by another run (sft_train, pid " + std::to_string(::getpid()) + " on "),
              std::string::npos) << e;
    EXPECT_NE(e.find("set another run.dir"), std::string::npos) << e;
  }
  EXPECT_NO_THROW(DirLock c(dir, "rm_train"));  // released with a
  d.write(".lock", "ppo_train, pid 999999 on a-host-that-crashed, since 2026-01-01 00:00:00 UTC\n");
  EXPECT_NO_THROW(DirLock c(dir, "rm_train"));  // a stale file
  EXPECT_EQ(read_all(d.at(".lock")).find("a-host-that-crashed"), std::string::npos);  // rewritten
}

TEST(Fs, FsyncTreeVisitsNestedFiles) {
  TempDir d("fs");
  fs::create_directories(d.path / "x" / "y");
  std::ofstream(d.at("x/y/z")) << "z";
  std::ofstream(d.at("x/w")) << "w";
  std::vector<std::string> synced;
  fsync_tree(d.path.string(), [&](const std::string& p) { synced.push_back(p); });
  ASSERT_EQ(synced.size(), 5u);  // z, w (either order), then y, x, the root
  const std::vector<std::string> files(synced.begin(), synced.begin() + 2);
  EXPECT_NE(std::find(files.begin(), files.end(), d.at("x/y/z")), files.end());
  EXPECT_NE(std::find(files.begin(), files.end(), d.at("x/w")), files.end());
  EXPECT_EQ(fs::path(synced[2]), d.path / "x" / "y");
  EXPECT_EQ(fs::path(synced[3]), d.path / "x");
  EXPECT_EQ(fs::path(synced[4]), d.path);
  EXPECT_NO_THROW(fsync_tree(d.path.string()));
}

// Reference values of splitmix64 from state 0 (Vigna's splitmix64.c): the first outputs.
// The OpenMP wait policy (process.h): a binary started without OMP_WAIT_POLICY runs with
// PASSIVE (re-executed before anything starts); a value the user set is kept. The child is this
// test binary running only the probe below, which prints what its process sees.
TEST(OmpWaitPolicy, ChosenUnlessTheUserSetIt) {
  if (const char* probe = std::getenv("RLHF_OMP_PROBE"); probe && std::string(probe) == "1") {
    const char* v = std::getenv("OMP_WAIT_POLICY");
    std::printf("probe: OMP_WAIT_POLICY=%s\n", v ? v : "(unset)");
    return;
  }
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  auto child = [&](const std::string& env) {
    return run_shell(env + " RLHF_OMP_PROBE=1 '" + self + "' --gtest_filter=OmpWaitPolicy.ChosenUnlessTheUserSetIt",
                     "", 60.0, "probe").out;
  };
  EXPECT_NE(child("env -u OMP_WAIT_POLICY").find("probe: OMP_WAIT_POLICY=PASSIVE"), std::string::npos);
  EXPECT_NE(child("OMP_WAIT_POLICY=ACTIVE").find("probe: OMP_WAIT_POLICY=ACTIVE"), std::string::npos);
}

TEST(Rng, SplitMix64MatchesTheReferenceStream) {
  uint64_t s = 0;
  EXPECT_EQ(splitmix64(s), 0xE220A8397B1DCDAFULL);
  EXPECT_EQ(splitmix64(s), 0x6E789E6AA1B965F4ULL);
  EXPECT_EQ(splitmix64(s), 0x06C45D188009454FULL);
  SplitMix64 g(0);
  EXPECT_EQ(g.next_u64(), 0xE220A8397B1DCDAFULL);
}

TEST(Rng, UniformStaysInRangeAndCoversIt) {
  SplitMix64 g(42);
  std::vector<int> hits(7, 0);
  for (int i = 0; i < 7000; ++i) {
    const int64_t v = g.uniform(7);
    ASSERT_GE(v, 0);
    ASSERT_LT(v, 7);
    hits[v]++;
  }
  for (int h : hits) EXPECT_GT(h, 800);  // expected 1000 each; 800 is > 6 sigma below
  for (int i = 0; i < 1000; ++i) {
    const double u = g.uniform01();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
  EXPECT_NE(error_of([&] { g.uniform(0); }).find("must be positive"), std::string::npos);
}

TEST(Rng, MixSeedSeparatesItsInputs) {
  const uint64_t a = mix_seed(1, 2, 0, 1);
  EXPECT_EQ(a, mix_seed(1, 2, 0, 1));
  EXPECT_NE(a, mix_seed(1, 3, 0, 1));
  EXPECT_NE(a, mix_seed(1, 2, 1, 1));
  EXPECT_NE(a, mix_seed(1, 2, 0, 2));
  EXPECT_NE(a, mix_seed(2, 2, 0, 1));
}

enum class Color { Red, Green };
constexpr EnumNames<Color, 2> kColors{{{Color::Red, "red"}, {Color::Green, "green"}}};

TEST(Strings, EnumNamesRoundTripAndNameTheValidChoices) {
  EXPECT_STREQ(kColors.name(Color::Green), "green");
  EXPECT_EQ(kColors.parse("red", "paint"), Color::Red);
  const std::string msg = error_of([] { kColors.parse("blue", "paint.color"); });
  EXPECT_NE(msg.find("paint.color: 'blue' is not one of red | green"), std::string::npos) << msg;
}

TEST(Strings, ShapeStr) {
  EXPECT_EQ(shape_str(torch::zeros({2, 3, 4})), "[2, 3, 4]");
  EXPECT_EQ(shape_str(torch::zeros({})), "[]");
  EXPECT_EQ(shape_str(torch::Tensor()), "undefined");
}

TEST(Dist, ParseDevice) {
  EXPECT_TRUE(parse_device("cpu", world()).is_cpu());
  if (!torch::cuda::is_available()) {
    EXPECT_TRUE(parse_device("auto", world()).is_cpu());
    EXPECT_TRUE(parse_device("", world()).is_cpu());
    const std::string msg = error_of([] { parse_device("cuda:0", world(), "--device"); });
    EXPECT_NE(msg.find("--device cuda:0: no CUDA device is visible"), std::string::npos) << msg;
  }
  const std::string msg = error_of([] { parse_device("gpu", world(), "train.device"); });
  EXPECT_NE(msg.find("train.device 'gpu': expected auto, cpu, cuda or cuda:N"), std::string::npos)
      << msg;
}

// What run_main prints for each kind of exception: libtorch's message without its backtrace
// (unless debugging), library errors with the library named, our own errors unchanged.
TEST(Dist, ExceptionsAreDescribedWithoutBacktraces) {
  auto describe = [](const std::function<void()>& f, bool debug) {
    try {
      f();
    } catch (...) {
      return describe_current_exception(debug);
    }
    return std::string("no exception");
  };
  // A libtorch error raised inside libtorch, and one raised by TORCH_CHECK here (which carries
  // the C++ backtrace in what()).
  std::string m = describe([] { torch::empty({-1}); }, false);
  EXPECT_EQ(m.rfind("libtorch: Trying to create tensor with negative dimension -1", 0), 0u) << m;
  EXPECT_NE(m.find("RLHF_DEBUG=1"), std::string::npos) << m;
  auto checked = [] { TORCH_CHECK(false, "micro batch ", 0, " is not positive"); };
  std::string full;
  try { checked(); } catch (const c10::Error& e) { full = e.what(); }
  ASSERT_NE(full.find("frame #"), std::string::npos) << full;
  m = describe(checked, false);
  EXPECT_EQ(m.rfind("libtorch: micro batch 0 is not positive", 0), 0u) << m;
  EXPECT_EQ(m.find("frame #"), std::string::npos) << m;
  EXPECT_NE(describe(checked, true).find("frame #"), std::string::npos);
  m = describe([] { (void)nlohmann::json::parse("{oops"); }, false);
  EXPECT_EQ(m.rfind("JSON: [json.exception.parse_error", 0), 0u) << m;
  m = describe([] { (void)YAML::Load("a: [1, 2"); }, false);
  EXPECT_EQ(m.rfind("YAML: ", 0), 0u) << m;
  EXPECT_NE(m.find("line 1"), std::string::npos) << m;
  m = describe([] { throw std::bad_alloc(); }, false);
  EXPECT_EQ(m.rfind("out of memory (std::bad_alloc)", 0), 0u) << m;
  EXPECT_EQ(describe([] { throw Error("data.train: x.h5: missing"); }, false),
            "data.train: x.h5: missing");
}

TEST(Dist, RankChunksAtOneRankAreConsecutive) {
  if (world().world_size() != 1) GTEST_SKIP() << "one-rank layout";
  auto c = rank_chunks(7, 3, world());
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0], (std::pair<int64_t, int64_t>(0, 3)));
  EXPECT_EQ(c[2], (std::pair<int64_t, int64_t>(6, 7)));
  EXPECT_TRUE(rank_chunks(0, 3, world()).empty());
}

// state.yaml: typed JSON written (exact doubles, strings that look like numbers stay strings),
// and files in the older block-YAML form still read.
TEST(CheckpointState, JsonRoundTripIsExactAndTyped) {
  TempDir d("state");
  nlohmann::json s = {{"step", 12}, {"kl_coef", 0.1 + 0.2}, {"tag", "007"}, {"flag", true},
                      {"cursor", {{"epoch", 3}, {"position", 17}}}, {"list", {1, 2.5, "x"}}};
  write_state_yaml(d.at("state.yaml"), s);
  const nlohmann::json r = read_state_yaml(d.at("state.yaml"));
  EXPECT_EQ(r, s);
  EXPECT_EQ(r["kl_coef"].get<double>(), 0.1 + 0.2);  // bit-exact
  EXPECT_TRUE(r["tag"].is_string());
}

TEST(CheckpointState, ReadsTheOlderYamlForm) {
  TempDir d("state");
  const std::string p = d.write("state.yaml",
      "step: 40\nkl_coef: 0.30000000000000004\nname: \"abc\"\ndone: false\ncursor:\n"
      "  epoch: 1\n  position: 9\n");
  const nlohmann::json r = read_state_yaml(p);
  EXPECT_EQ(r["step"].get<int64_t>(), 40);
  EXPECT_EQ(r["cursor"]["position"].get<int64_t>(), 9);
  EXPECT_EQ(r["done"].get<bool>(), false);
  EXPECT_EQ(r["kl_coef"].get<double>(), 0.1 + 0.2);
  EXPECT_EQ(r["name"].get<std::string>(), "abc");
}

TEST(CheckpointState, CorruptFilesAreNamed) {
  TempDir d("state");
  const std::string p = d.write("state.yaml", "{\"step\": 3, ");
  std::string msg = error_of([&] { read_state_yaml(p); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("corrupt checkpoint state"), std::string::npos) << msg;
  const std::string q = d.write("other.yaml", "{\"epoch\": 3}");
  msg = error_of([&] { read_state_yaml(q); });
  EXPECT_NE(msg.find("no 'step'"), std::string::npos) << msg;
}

}  // namespace
}  // namespace rlhf
