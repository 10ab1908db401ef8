// dpo_config.cpp — see dpo_config.h.
#include "dpo/dpo_config.h"

#include "common/train/dry_run.h"

namespace rlhf {

namespace {

void add_dpo_keys(Config& cfg, Schema& s) {
  DpoSection& d = dpo_section(cfg);
  s.add_enum("rm.pair_normalizer", &d.pair_normalizer, kPairNormalizerNames);  // as the RM weighs a group
  s.add_double("dpo.beta", &d.beta, 0, Schema::kInf, true);
  s.add_enum("dpo.loss", &d.loss, kDpoLossNames);
  s.add_double("dpo.label_smoothing", &d.label_smoothing, 0, 0.5);
  s.add_string("dpo.reference", &d.reference);
  s.add_bool("dpo.ipo_average", &d.ipo_average);
}

// The policy and its frozen reference (dpo.reference, default init).
std::vector<StageModel> dpo_models(const Config& cfg, const ModelConfig& base) {
  const DpoSection& d = dpo_section(cfg);
  return {{"policy", base, false, true},
          {"reference", d.reference.empty() ? base : checkpoint_model_config(d.reference, "dpo.reference"), false, false}};
}

}  // namespace

const StageSpec& dpo_stage() {
  static const StageSpec spec{
      "dpo", "direct preference optimisation from ranked data", [] { return std::make_unique<DpoSection>(); },
      add_dpo_keys, {},
      [](const Config&) {
        StagePlan plan;
        plan.ranked_groups = true;  // a micro-batch counts prompts, each with its K responses
        return plan;
      },
      dpo_models};
  return spec;
}

DpoSection& dpo_section(Config& cfg) { return section_as<DpoSection>(cfg, "dpo"); }
const DpoSection& dpo_section(const Config& cfg) { return section_as<DpoSection>(cfg, "dpo"); }

DpoOptions dpo_options(const DpoSection& d) {
  DpoOptions o;
  o.beta = d.beta;
  o.loss = d.loss;
  o.label_smoothing = d.label_smoothing;
  o.ipo_average = d.ipo_average;
  o.normalizer = d.pair_normalizer;
  return o;
}

}  // namespace rlhf
