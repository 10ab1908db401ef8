// rm_trainer.h — stage 2: the reward model (SFT trunk + scalar head) trained with InstructGPT's
// K-wise ranking loss, then a bias fitted so the SFT demonstrations get mean reward 0.
// The ranked-data evaluation (shared with `rlhf_eval rm-acc`) is in rm_eval.h.
#pragma once

#include "common/train/run.h"

namespace rlhf {

int run_rm(int argc, char** argv);  // entry point of rm_train; exit code as run_sft
int run_rm(const RunRequest& req);  // the same, with the config built by the caller (tests)

}  // namespace rlhf
