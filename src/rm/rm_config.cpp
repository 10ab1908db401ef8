// rm_config.cpp — see rm_config.h.
#include "rm/rm_config.h"

namespace rlhf {

const StageSpec& rm_stage() {
  static const StageSpec spec{
      "rm", "reward model training (stage 2)", [] { return std::make_unique<RmSection>(); },
      [](Config& cfg, Schema& s) {
        s.add_enum("rm.pair_normalizer", &rm_section(cfg).pair_normalizer, kPairNormalizerNames);
        s.add_string("data.bias_data", &rm_section(cfg).bias_data);
      },
      {},
      [](const Config&) {
        StagePlan plan;
        plan.ranked_groups = true;  // a micro-batch counts prompts, each with its K responses
        return plan;
      },
      [](const Config&, const ModelConfig& base) { return std::vector<StageModel>{{"reward model", base, true, true}}; }};
  return spec;
}

RmSection& rm_section(Config& cfg) { return section_as<RmSection>(cfg, "rm"); }
const RmSection& rm_section(const Config& cfg) { return section_as<RmSection>(cfg, "rm"); }

}  // namespace rlhf
