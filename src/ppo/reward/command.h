// command.h — rewards from an external program (ppo.reward: command, issue 19): once per
// iteration, on each rank for its own rows (the held-out evaluation: in runs of at most that many
// rows), `/bin/sh -c "$ppo.reward_command"` gets one JSON line per row on stdin,
//   {"prompt": "<decoded prompt>", "response": "<decoded response, up to EOS>", "eos": true}
// (invalid UTF-8 replaced by U+FFFD), and must answer on stdout with one decimal number per line
// (no hex, |x| <= kMaxRewardMagnitude),
// in order, one line per row, then exit with status 0 — all within ppo.reward_timeout_s seconds.
// The number is the raw score that the no-EOS penalty and score clip act on, as a reward model's.
// Its answer is complete when the shell exits: background children it leaves holding stdout get
// 0.2 s more, then its process group is killed.
//
// Contract:
// - run_reward_command never throws for what the program does: a timeout (the program's process
//   group is killed), a non-zero exit, a line that is not one finite number, or a wrong line
//   count come back as CommandOutcome::error, naming the key, the line and what was expected
//   (with the tail of the program's stderr). It throws only when the program cannot be started.
// - command_scores is collective: every rank runs its rows (none: no run), then all ranks learn
//   whether any failed; if one did, every rank throws StepAbortedError (train/loop.h) naming the failing
//   rank's error, so the run checkpoints its completed steps before it stops.
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/data/data.h"
#include "common/dist/dist.h"
#include "ppo/rollout.h"

namespace rlhf {

// The largest |reward| an external reward (command, remote) may answer: far beyond any real
// reward scale, and small enough that returns, advantages and their squares stay finite (a reward
// of 1e308 made every step non-finite and skipped). A larger value is refused, naming it.
inline constexpr double kMaxRewardMagnitude = 1e6;

struct CommandOutcome {
  std::vector<double> scores;  // one per input line when error is empty
  std::string error;           // "" = success
};

// Runs `command` under /bin/sh -c with `input` on stdin (rows lines); see the header comment.
CommandOutcome run_reward_command(const std::string& command, double timeout_s,
                                  const std::string& input, size_t rows);

// The JSONL request lines for ro's rows, whose prompts are data rows idx [B]: one per row, each
// ending with '\n'.
std::vector<std::string> reward_command_lines(const Rollout& ro, const PromptData& data,
                                              const std::vector<int64_t>& idx, const class Tokenizer& tok);

// The scores of an outcome for this rank's batches (r.scores: their rows in order), once every
// rank's outcome is known: if any rank's has an error, every rank throws StepAbortedError naming
// it (and the rank); else one [B_i] float32 tensor per batch on its rollout's device.
// Collective; also the end of ppo.reward: remote (reward/remote.h).
std::vector<torch::Tensor> collective_scores(const CommandOutcome& r, const std::vector<RolloutBatch>& batches,
                                             Communicator& comm);

// Raw scores of this rank's batches (possibly none): their rows in order, in runs of the program
// of at most rows_per_run rows (0: one run for all; no run when there are none), each run with
// the whole timeout; one [B_i] float32 tensor per batch on its rollout's device. Collective (see
// the contract): every rank calls it once, whatever its number of batches.
std::vector<torch::Tensor> command_scores(const std::string& command, double timeout_s, int64_t rows_per_run,
                                          const std::vector<RolloutBatch>& batches, const PromptData& data,
                                          const class Tokenizer& tok, Communicator& comm);

}  // namespace rlhf
