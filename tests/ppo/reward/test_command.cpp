// test_reward_command.cpp — run_reward_command (ppo.reward: command, src/ppo/reward/command.h)
// against small shell programs: answers parsed in order, and each way a program can misbehave
// (garbage, a wrong line count, a non-zero exit, a hang, not reading stdin) an error naming the
// key and what was expected, never an exception or a dead trainer.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "ppo/reward/command.h"

namespace rlhf {
namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Each line's length as its score: awk sees the exact bytes the trainer wrote.
TEST(RewardCommand, AnswersInOrder) {
  const std::string input = "{\"a\":1}\n{\"bb\":22}\n{}\n";
  const CommandOutcome r = run_reward_command("awk '{print length($0)}'", 10, input, 3);
  ASSERT_EQ(r.error, "");
  ASSERT_EQ(r.scores.size(), 3u);
  EXPECT_EQ(r.scores[0], 7.0);   // {"a":1}
  EXPECT_EQ(r.scores[1], 9.0);   // {"bb":22}
  EXPECT_EQ(r.scores[2], 2.0);   // {}
  // Spaces around a number, CRLF, exponents and a missing final newline are fine.
  const CommandOutcome s = run_reward_command("cat >/dev/null; printf ' -1.5e1 \\r\\n2'", 10, input, 2);
  ASSERT_EQ(s.error, "");
  EXPECT_EQ(s.scores[0], -15.0);
  EXPECT_EQ(s.scores[1], 2.0);
}

TEST(RewardCommand, GarbageNamesTheLine) {
  const CommandOutcome r = run_reward_command("cat >/dev/null; echo 1; echo hello; echo 3", 10, "x\ny\nz\n", 3);
  EXPECT_TRUE(r.scores.empty());
  EXPECT_TRUE(contains(r.error, "ppo.reward_command")) << r.error;
  EXPECT_TRUE(contains(r.error, "stdout line 2: 'hello' is not one finite number")) << r.error;
  const CommandOutcome n = run_reward_command("cat >/dev/null; echo nan", 10, "x\n", 1);
  EXPECT_TRUE(contains(n.error, "'nan' is not one finite number")) << n.error;
  const CommandOutcome two = run_reward_command("cat >/dev/null; echo '1 2'", 10, "x\n", 1);
  EXPECT_TRUE(contains(two.error, "'1 2' is not one finite number")) << two.error;
  // Hex is not a decimal reward (strtod would read 0x10 as 16); 1e308 overflows the advantages.
  const CommandOutcome hex = run_reward_command("cat >/dev/null; echo 0x10", 10, "x\n", 1);
  EXPECT_TRUE(contains(hex.error, "'0x10' is not one finite number")) << hex.error;
  const CommandOutcome huge = run_reward_command("cat >/dev/null; echo 1e308", 10, "x\n", 1);
  EXPECT_TRUE(contains(huge.error, "stdout line 1: 1e308 is beyond ±1e+06")) << huge.error;
  EXPECT_EQ(run_reward_command("cat >/dev/null; echo -1e6", 10, "x\n", 1).scores,
            (std::vector<double>{-1e6}));
}

TEST(RewardCommand, WrongLineCount) {
  const CommandOutcome r = run_reward_command("cat >/dev/null; echo 1", 10, "x\ny\n", 2);
  EXPECT_TRUE(contains(r.error, "answered 1 lines for 2 rows")) << r.error;
  const CommandOutcome more = run_reward_command("cat >/dev/null; printf '1\\n2\\n3\\n'", 10, "x\ny\n", 2);
  EXPECT_TRUE(contains(more.error, "answered 3 lines for 2 rows")) << more.error;
}

TEST(RewardCommand, NonZeroExitWithStderr) {
  const CommandOutcome r = run_reward_command("cat >/dev/null; echo 1; echo 'model not found' >&2; exit 3", 10, "x\n", 1);
  EXPECT_TRUE(contains(r.error, "exited with status 3")) << r.error;
  EXPECT_TRUE(contains(r.error, "model not found")) << r.error;
}

// A program that hangs is killed at the timeout, with its children (its process group).
TEST(RewardCommand, HangIsKilledAtTheTimeout) {
  const auto t0 = std::chrono::steady_clock::now();
  const CommandOutcome r = run_reward_command("cat >/dev/null; sleep 30 | cat", 0.5, "x\n", 1);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(contains(r.error, "did not answer 1 rows within ppo.reward_timeout_s = 0.5 s (killed)")) << r.error;
  EXPECT_LT(s, 10.0) << "the timeout did not stop the wait";
}

// A program that answers, then exits leaving a background child holding its stdout: the answer
// counts once the shell has exited (0.2 s grace), not at the timeout; the child is killed.
TEST(RewardCommand, BackgroundChildDoesNotHoldTheAnswer) {
  const auto t0 = std::chrono::steady_clock::now();
  const CommandOutcome r = run_reward_command("cat >/dev/null; sleep 30 & echo 2.5", 20, "x\n", 1);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.scores, std::vector<double>{2.5});
  EXPECT_LT(s, 5.0) << "waited for the background child";
}

// A program that exits without reading 4 MB of stdin: no SIGPIPE for the trainer, a clear error.
TEST(RewardCommand, ProgramThatIgnoresStdin) {
  const std::string big(4 << 20, 'x');
  const CommandOutcome r = run_reward_command("exit 0", 10, big + "\n", 1);
  EXPECT_TRUE(contains(r.error, "answered 0 lines for 1 rows")) << r.error;
}

}  // namespace
}  // namespace rlhf
