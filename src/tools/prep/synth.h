// synth.h — `rlhf_prep synth --out DIR [--seed S]`: writes the embedded task's datasets
// (byte tokenizer, source = "synth"; see docs/TASK.md and common/task/synth_task.h):
//   DIR/sft.h5, sft_eval.h5            demonstrations of mixed quality (synth_sample_response)
//   DIR/ranked.h5, ranked_eval.h5      K in 4..9 responses per prompt: one base list, K variants
//                                      with demonstrator-mix errors (synth_make_variant), ranked by
//                                      the hidden score (ties share a rank; all-tied groups resampled)
//   DIR/prompts.h5, prompts_eval.h5    PPO prompts / held-out prompts
//   DIR/pretrain.h5, pretrain_eval.h5  simple sentences about the categories, EOS after each doc
// Deterministic: the same seed and sizes give the same token arrays and attributes. Each file
// draws from its own stream (seed, file index), so changing one size leaves the others unchanged.
// Called by main.cpp and by tests / trainers' tests (rank 0 only).
#pragma once
#include <cstdint>
#include <string>

namespace rlhf {

struct SynthSizes {
  int64_t sft = 4000, sft_eval = 200;
  int64_t ranked = 2000, ranked_eval = 200;  // prompt groups
  int64_t prompts = 1000, prompts_eval = 200;
  int64_t pretrain_bytes = 200000, pretrain_eval_bytes = 20000;  // approximate text sizes
};

// Creates DIR if needed; logs one line per file to stderr.
void write_synth_task(const std::string& dir, uint64_t seed, const SynthSizes& sizes = {});

}  // namespace rlhf
