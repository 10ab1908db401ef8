// sft_trainer.h — stage 1: supervised fine-tuning of the policy on demonstrations
// (cross-entropy on response tokens only). Entry point of `sft_train`; collective over all ranks.
#pragma once

#include "common/train/run.h"

namespace rlhf {

// Returns the process exit code: 0 done (or stopped at train.stop_at_step), kExitPreempted after
// SIGTERM/SIGUSR1 (a checkpoint was written; rerun with --resume).
int run_sft(int argc, char** argv);
int run_sft(const RunRequest& req);  // the same, with the config built by the caller (tests)

}  // namespace rlhf
