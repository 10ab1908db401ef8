// ppo_trainer.h — stage 3: PPO against the frozen reward model with a per-token KL penalty to the
// frozen SFT policy, GAE, a critic initialised from the RM, and the pretraining mix (PPO-ptx).
// Entry point of `ppo_train`; collective over all ranks. One training step = one PPO iteration:
//   rollout (generate) -> score -> old/ref log-probs, values -> rewards (-β·kl_t, + score at the
//   last token) -> GAE -> advantages whitened over all ranks -> ppo_epochs x minibatches of
//   (policy loss + vf_coef · value loss + ptx_coef · pretraining CE) -> optimizer steps -> β update.
#pragma once

#include "common/train/run.h"

namespace rlhf {

int run_ppo(int argc, char** argv);  // exit code as run_sft
int run_ppo(const RunRequest& req);  // the same, with the config built by the caller (tests)

}  // namespace rlhf
