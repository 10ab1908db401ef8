#include "tools/prep/synth.h"

#include <cmath>
#include <filesystem>
#include <iostream>

#include "common/core/check.h"
#include "common/data/data.h"
#include "common/task/synth_task.h"
#include "common/tokenizer/tokenizer.h"
#include "tools/prep/common.h"

namespace rlhf {

namespace {

enum FileStream : uint64_t { kSft = 1, kSftEval, kRanked, kRankedEval, kPrompts, kPromptsEval,
                             kPretrain, kPretrainEval };

SynthRng stream(uint64_t seed, FileStream which) {
  SynthRng mix(seed ^ (0x5851F42D4C957F2DULL * static_cast<uint64_t>(which)));
  return SynthRng(mix.next_u64());
}

const char* quality_name(SynthQuality q) {
  switch (q) {
    case SynthQuality::Perfect: return "demo_perfect";
    case SynthQuality::Repeat: return "demo_repeat";
    case SynthQuality::WrongItem: return "demo_wrong_item";
    case SynthQuality::WrongCount: return "demo_wrong_count";
    case SynthQuality::Rambling: return "demo_rambling";
    case SynthQuality::NoPeriod: return "demo_no_period";
  }
  return "demo_unknown";
}

void log_written(const std::string& path, const PrepReport& rep) {
  std::cerr << fmt::format("rlhf_prep synth: wrote {} ({} rows)\n", path, rep.get("rows_written"));
}

void write_sft(const std::string& path, SynthRng rng, int64_t n, const Tokenizer& tok) {
  SftData d;
  PrepReport rep(false);
  for (int64_t i = 0; i < n; ++i) {
    SynthPrompt p = synth_random_prompt(rng);
    std::string prompt = synth_format_prompt(p, static_cast<int>(rng.uniform(4)));
    SynthQuality q;
    std::string response = synth_sample_response(p, rng, &q);
    rep.add(quality_name(q));
    d.prompt.push(tok.encode(prompt));
    d.response.push(tok.encode(response));
  }
  rep.add("rows_read", n);
  rep.add("rows_written", n);
  d.meta = make_meta(tok, "synth", rep);
  d.save(path);
  log_written(path, rep);
}

// Dense ranks by descending score (equal scores share a rank).
std::vector<int32_t> dense_ranks(const std::vector<double>& scores) {
  std::vector<double> uniq = scores;
  std::sort(uniq.begin(), uniq.end(), std::greater<double>());
  std::vector<double> levels;
  for (double s : uniq)
    if (levels.empty() || std::fabs(levels.back() - s) > 1e-9) levels.push_back(s);
  std::vector<int32_t> ranks;
  for (double s : scores) {
    int32_t r = 0;
    while (std::fabs(levels[r] - s) > 1e-9) ++r;
    ranks.push_back(r);
  }
  return ranks;
}

void write_ranked(const std::string& path, SynthRng rng, int64_t n, const Tokenizer& tok) {
  RankedData d;
  PrepReport rep(false);
  for (int64_t g = 0; g < n; ++g) {
    std::string prompt = synth_random_prompt_text(rng);
    SynthPrompt p;
    synth_prompt_parse(prompt, &p);
    int k = 4 + static_cast<int>(rng.uniform(6));  // K in 4..9
    std::vector<std::string> texts;
    std::vector<int32_t> ranks;
    while (true) {
      // One base list per group, K variants of it (minimal pairs: responses differ only by their
      // errors, so each comparison isolates what the scorer penalises).
      texts.clear();
      std::vector<double> scores;
      const std::vector<std::string> base = synth_distinct_items(p.category, p.n, rng);
      for (int j = 0; j < k; ++j) {
        texts.push_back(synth_make_variant(p, base, synth_sample_quality(rng), rng));
        scores.push_back(synth_hidden_score(prompt, texts.back(), /*ended_with_eos=*/true));
      }
      ranks = dense_ranks(scores);
      if (*std::max_element(ranks.begin(), ranks.end()) > 0) break;
      rep.add("resampled_all_tied");
    }
    std::vector<std::vector<int32_t>> rs;
    for (const auto& t : texts) rs.push_back(tok.encode(t));
    d.push_group(tok.encode(prompt), rs, ranks);
    rep.add("k_" + std::to_string(k));
  }
  rep.add("rows_read", n);
  rep.add("rows_written", n);
  d.meta = make_meta(tok, "synth", rep);
  d.save(path);
  log_written(path, rep);
}

void write_prompts(const std::string& path, SynthRng rng, int64_t n, const Tokenizer& tok) {
  PromptData d;
  PrepReport rep(false);
  for (int64_t i = 0; i < n; ++i) d.prompt.push(tok.encode(synth_random_prompt_text(rng)));
  rep.add("rows_read", n);
  rep.add("rows_written", n);
  d.meta = make_meta(tok, "synth", rep);
  d.save(path);
  log_written(path, rep);
}

void write_pretrain(const std::string& path, SynthRng rng, int64_t bytes, const Tokenizer& tok) {
  PretrainData d;
  PrepReport rep(false);
  int64_t text_bytes = 0, docs = 0;
  while (text_bytes < bytes) {
    std::string doc = synth_pretrain_document(rng);
    text_bytes += static_cast<int64_t>(doc.size());
    auto ids = tok.encode(doc);
    d.tokens.insert(d.tokens.end(), ids.begin(), ids.end());
    d.tokens.push_back(tok.eos_id());  // EOS after every document
    ++docs;
  }
  rep.add("rows_read", docs);
  rep.add("rows_written", docs);
  d.meta = make_meta(tok, "synth", rep);
  d.save(path);
  log_written(path, rep);
}

}  // namespace

void write_synth_task(const std::string& dir, uint64_t seed, const SynthSizes& s) {
  RLHF_CHECK(s.sft > 0 && s.sft_eval > 0 && s.ranked > 0 && s.ranked_eval > 0 && s.prompts > 0 &&
                 s.prompts_eval > 0 && s.pretrain_bytes > 0 && s.pretrain_eval_bytes > 0,
             "rlhf_prep synth: every dataset size must be positive");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  RLHF_CHECK(!ec, "rlhf_prep synth: cannot create output directory '{}': {}", dir, ec.message());
  auto tok = load_tokenizer("byte");
  auto at = [&](const char* name) { return (std::filesystem::path(dir) / name).string(); };
  write_sft(at("sft.h5"), stream(seed, kSft), s.sft, *tok);
  write_sft(at("sft_eval.h5"), stream(seed, kSftEval), s.sft_eval, *tok);
  write_ranked(at("ranked.h5"), stream(seed, kRanked), s.ranked, *tok);
  write_ranked(at("ranked_eval.h5"), stream(seed, kRankedEval), s.ranked_eval, *tok);
  write_prompts(at("prompts.h5"), stream(seed, kPrompts), s.prompts, *tok);
  write_prompts(at("prompts_eval.h5"), stream(seed, kPromptsEval), s.prompts_eval, *tok);
  write_pretrain(at("pretrain.h5"), stream(seed, kPretrain), s.pretrain_bytes, *tok);
  write_pretrain(at("pretrain_eval.h5"), stream(seed, kPretrainEval), s.pretrain_eval_bytes, *tok);
}

}  // namespace rlhf
