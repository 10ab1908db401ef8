// synth_task.h — the embedded default task ("list 3 fruits:" -> " apple, pear, plum.") and its
// hidden scorer. No files: everything is generated from a seed (see docs/TASK.md).
//
// Prompt forms: "<verb> <N> <category>:" with verb in {list, name, give me, write}, N in 1..4,
// category plural for N > 1 and singular for N = 1 ("name 1 fruit:"). A well-formed response is
// " item, item, item." (leading space, items joined by ", ", ending with "."); the trainer appends
// EOS after it.
//
// synth_hidden_score (the "human preference" the reward model must learn; used by rlhf_eval and
// the end-to-end test, never by training):
//   +1/N  per distinct correct-category item, counting at most N of them
//   -0.5/N per repeated item (each occurrence after the first)
//   -0.5/N per wrong-category or unknown item
//   -0.25  per item beyond N (list length - N, if positive)
//   -0.5   once if the response did not end with EOS, or is malformed (no ".", text after the
//          first ".", or an empty item)
//   then clamped to [-1, 1]. Items are the text before the first "." split at ",", trimmed.
// Thread-safety: all functions are pure (the rng is the caller's).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/core/rng.h"

namespace rlhf {

struct SynthCategory {
  std::string singular, plural;
  std::vector<std::string> words;  // short lowercase words, disjoint across categories
};
const std::vector<SynthCategory>& synth_categories();

struct SynthPrompt {
  int n = 0;          // requested item count, 1..4
  int category = -1;  // index into synth_categories()
};

// Reads N and the category of a synth prompt; false if it is not one (surrounding whitespace ok).
bool synth_prompt_parse(const std::string& prompt, SynthPrompt* out);

// Throws rlhf::Error if the prompt is not a synth prompt.
double synth_hidden_score(const std::string& prompt, const std::string& response,
                          bool ended_with_eos);

// What is wrong with a response, in the scorer's terms (for diagnostics: per-kind accuracy of a
// reward model). One name, or several joined by "+" in this order: "no_period" (no "."),
// "rambling" (text after the first "."), "empty_item", "too_few" / "too_many" (item count vs N),
// "repeat", "wrong_item" (another category or unknown word); "perfect" when none applies.
// Throws rlhf::Error if the prompt is not a synth prompt.
std::string synth_error_kind(const std::string& prompt, const std::string& response);

// Deterministic, platform-independent generator (core/rng.h).
using SynthRng = SplitMix64;

// Quality classes of the noisy demonstrator.
enum class SynthQuality { Perfect, Repeat, WrongItem, WrongCount, Rambling, NoPeriod };

std::string synth_format_prompt(const SynthPrompt& p, int phrasing);  // phrasing in [0, 4)
SynthPrompt synth_random_prompt(SynthRng& rng);
std::string synth_random_prompt_text(SynthRng& rng);
std::string synth_make_response(const SynthPrompt& p, SynthQuality q, SynthRng& rng);
// The demonstrator's quality mix: 40% perfect, 15% repeat, 15% wrong item, 15% wrong count,
// 10% rambling, 5% no period (one uniform01 draw).
SynthQuality synth_sample_quality(SynthRng& rng);
// Mixed-quality demonstration: synth_sample_quality, then synth_make_response.
std::string synth_sample_response(const SynthPrompt& p, SynthRng& rng,
                                  SynthQuality* quality = nullptr);
// k distinct words of the category, in random order (k <= 8).
std::vector<std::string> synth_distinct_items(int category, int k, SynthRng& rng);
// Quality q applied to a given list `base` of p.n distinct correct items, changing only what the
// error needs: repeat = one later item replaced by an earlier one (N = 1: the item twice); wrong
// item = one item replaced by a word of another category; wrong count = one item removed, or 1-2
// new distinct items appended; rambling / no period = base with a sentence after it / without
// the ".". The ranked data draws one base per prompt and K variants of it, so the responses of a
// group differ only by their errors (minimal pairs; see docs/TASK.md).
std::string synth_make_variant(const SynthPrompt& p, const std::vector<std::string>& base,
                               SynthQuality q, SynthRng& rng);
// A pretraining document: a few simple sentences about the categories ("a pear is a fruit.").
std::string synth_pretrain_document(SynthRng& rng);

}  // namespace rlhf
