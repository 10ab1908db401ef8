// sft_config.h — sft_train's stage: no keys of its own (train.*, data.* and the rest are every
// stage's, common/train/config.h); one trained policy.
#pragma once
#include "common/train/stage_spec.h"

namespace rlhf {

const StageSpec& sft_stage();

}  // namespace rlhf
