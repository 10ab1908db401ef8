// inspect.cpp — `rlhf_prep inspect`: a dataset's attributes, counts, lengths, report, and with
// --rows N its first rows decoded (commands.h).
#include <algorithm>
#include <map>

#include <nlohmann/json.hpp>

#include "common/core/check.h"
#include "common/data/data.h"
#include "tools/prep/commands.h"

namespace rlhf {

// ---- inspect --------------------------------------------------------------------------
namespace {

std::string length_stats(const char* what, const Ragged& r) {
  if (r.size() == 0) return fmt::format("  {} lengths: (none)\n", what);
  std::vector<int64_t> len;
  for (int64_t i = 0; i < r.size(); ++i) len.push_back(r.row_len(i));
  std::sort(len.begin(), len.end());
  double mean = static_cast<double>(r.tokens.size()) / static_cast<double>(len.size());
  return fmt::format("  {} lengths: min {} mean {:.1f} p50 {} p95 {} max {}\n", what, len.front(),
                     mean, len[len.size() / 2], len[len.size() * 95 / 100], len.back());
}

// The first n rows as JSON lines, decoded with the dataset's tokenizer (special tokens kept).
void print_rows(const std::string& path, const DatasetMeta& m, int64_t n, std::ostream& out) {
  auto tok = load_tokenizer(m.tokenizer_spec);
  RLHF_CHECK(tok->identity() == m.tokenizer, "{}: tokenizer '{}' is now '{}', not the '{}' the rows were made with",
             path, m.tokenizer_spec, tok->identity(), m.tokenizer);
  auto text = [&](const int32_t* p, int64_t len) {
    return tok->decode_with_special_tokens(std::vector<int32_t>(p, p + len));
  };
  using ojson = nlohmann::ordered_json;
  auto emit = [&](const ojson& j) { out << j.dump(-1, ' ', false, ojson::error_handler_t::replace) << "\n"; };
  switch (m.kind) {
    case DataKind::Sft: {
      auto d = SftData::load(path);
      for (int64_t i = 0; i < std::min(n, d.size()); ++i) {
        const PromptResponse r = d.row(i);
        ojson j = {{"row", i}, {"prompt", text(r.prompt, r.prompt_len)}, {"response", text(r.response, r.response_len)}};
        if (r.spans) {
          j["targets"] = ojson::array();
          for (int64_t k = 0; k + 1 < r.spans_len; k += 2)
            j["targets"].push_back(text(r.response + r.spans[k], r.spans[k + 1] - r.spans[k]));
        }
        emit(j);
      }
      break;
    }
    case DataKind::Ranked: {
      auto d = RankedData::load(path);
      for (int64_t g = 0; g < std::min(n, d.size()); ++g) {
        ojson j = {{"group", g}, {"prompt", text(d.prompt.row_data(g), d.prompt.row_len(g))},
                   {"responses", ojson::array()}, {"ranks", ojson::array()}};
        for (int64_t q = d.first_response(g); q < d.end_response(g); ++q) {
          j["responses"].push_back(text(d.responses.row_data(q), d.responses.row_len(q)));
          j["ranks"].push_back(d.ranks[q]);
        }
        emit(j);
      }
      break;
    }
    case DataKind::Prompts: {
      auto d = PromptData::load(path);
      for (int64_t i = 0; i < std::min(n, d.size()); ++i)
        emit({{"row", i}, {"prompt", text(d.prompt.row_data(i), d.prompt.row_len(i))}});
      break;
    }
    case DataKind::Pretrain: {
      auto d = PretrainData::load(path);
      const int64_t len = std::min<int64_t>(d.size(), n * 64);
      emit({{"tokens", len}, {"text", text(d.tokens.data(), len)}});
      break;
    }
  }
}

}  // namespace

void run_prep_inspect(const std::string& path, std::ostream& out, int64_t rows) {
  DatasetMeta m = load_dataset_meta(path);
  out << fmt::format("file: {}\nkind: {}\nformat_version: {}\ntokenizer: {}\ntokenizer_spec: {}\n"
                     "vocab_size: {}\nsource: {}\n",
                     path, data_kind_name(m.kind), m.format_version, m.tokenizer,
                     m.tokenizer_spec, m.vocab_size, m.source);
  out << (m.chat() ? fmt::format("chat_template: {} (end_of_turn {})\n", m.chat_template_name,
                                 m.end_of_turn >= 0 ? std::to_string(m.end_of_turn) : "none: EOS ends a turn")
                   : std::string("chat_template: none (plain rows)\n"));
  switch (m.kind) {
    case DataKind::Sft: {
      auto d = SftData::load(path);
      out << fmt::format("examples: {}\ntokens: {}\n", d.size(),
                         d.prompt.tokens.size() + d.response.tokens.size());
      out << length_stats("prompt", d.prompt) << length_stats("response", d.response);
      if (d.has_targets()) {
        int64_t n = 0;
        for (int64_t k = 0; k + 1 < static_cast<int64_t>(d.targets.tokens.size()); k += 2)
          n += d.targets.tokens[k + 1] - d.targets.tokens[k];
        out << fmt::format("target tokens: {} (assistant turns; {} spans)\n", n, d.targets.tokens.size() / 2);
      }
      break;
    }
    case DataKind::Ranked: {
      auto d = RankedData::load(path);
      out << fmt::format("groups: {}\nresponses: {}\npairs: ", d.size(), d.responses.size());
      std::map<int64_t, int64_t> hist;
      int64_t pairs = 0;
      for (int64_t g = 0; g < d.size(); ++g) {
        hist[d.group_size(g)]++;
        for (int64_t a = d.first_response(g); a < d.end_response(g); ++a)
          for (int64_t b = a + 1; b < d.end_response(g); ++b) pairs += d.ranks[a] != d.ranks[b];
      }
      out << pairs << " (ordered, ties excluded)\nK histogram:";
      for (const auto& [k, c] : hist) out << fmt::format(" K={}:{}", k, c);
      out << "\n" << length_stats("prompt", d.prompt) << length_stats("response", d.responses);
      break;
    }
    case DataKind::Prompts: {
      auto d = PromptData::load(path);
      out << fmt::format("prompts: {}\n", d.size()) << length_stats("prompt", d.prompt);
      break;
    }
    case DataKind::Pretrain: {
      auto d = PretrainData::load(path);
      out << fmt::format("tokens: {}\n", d.size());
      break;
    }
  }
  out << "report:\n";
  for (const auto& [k, v] : m.report) out << fmt::format("  {} = {}\n", k, v);
  if (rows > 0) print_rows(path, m, rows, out);
}

}  // namespace rlhf
