// dpo_config.h — dpo_train's own settings: the dpo.* keys and rm.pair_normalizer (a group's pairs
// are weighted as the RM's; docs/CONFIG.md), and the loss options built from them.
#pragma once
#include <memory>
#include <string>

#include "common/data/ranked_pairs.h"
#include "common/train/config.h"
#include "common/train/stage_spec.h"
#include "dpo/dpo_loss.h"

namespace rlhf {

struct DpoSection : StageSection {
  std::unique_ptr<StageSection> clone() const override { return std::make_unique<DpoSection>(*this); }
  double beta = 0.1;            // β: strength of the implicit KL to the reference
  DpoLossKind loss = DpoLossKind::Sigmoid;
  double label_smoothing = 0.0;  // sigmoid only: the assumed rate of flipped preferences, [0, 0.5)
  bool ipo_average = true;      // ipo only: per-token MEAN log-ratios (TRL's form; false: sums)
  std::string reference;        // the frozen reference policy; "" = init (the SFT checkpoint)
  PairNormalizer pair_normalizer = PairNormalizer::Paper;  // rm.pair_normalizer
};

const StageSpec& dpo_stage();

DpoSection& dpo_section(Config& cfg);
const DpoSection& dpo_section(const Config& cfg);

// The loss options of dpo_loss (dpo_loss.h) from the section.
DpoOptions dpo_options(const DpoSection& d);

}  // namespace rlhf
