// sft_config.cpp — see sft_config.h.
#include "sft/sft_config.h"

namespace rlhf {

const StageSpec& sft_stage() {
  static const StageSpec spec{
      "sft", "supervised fine-tuning (stage 1)", {}, {}, {}, {},
      [](const Config&, const ModelConfig& base) { return std::vector<StageModel>{{"policy", base, false, true}}; }};
  return spec;
}

}  // namespace rlhf
