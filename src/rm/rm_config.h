// rm_config.h — rm_train's own settings: rm.pair_normalizer and data.bias_data (docs/CONFIG.md).
#pragma once
#include <memory>
#include <string>

#include "common/data/ranked_pairs.h"
#include "common/train/config.h"
#include "common/train/stage_spec.h"

namespace rlhf {

struct RmSection : StageSection {
  std::unique_ptr<StageSection> clone() const override { return std::make_unique<RmSection>(*this); }
  // Divide each prompt's pair losses by C(K,2) (paper, InstructGPT eq. 1) or by the number of
  // strictly ordered pairs (strict_pairs). See rm/rm_loss.h.
  PairNormalizer pair_normalizer = PairNormalizer::Paper;
  std::string bias_data;  // data.bias_data: SFT demonstrations whose mean reward is fitted to 0 ("" = skip)
};

const StageSpec& rm_stage();

RmSection& rm_section(Config& cfg);
const RmSection& rm_section(const Config& cfg);

}  // namespace rlhf
