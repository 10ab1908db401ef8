// common.h — shared pieces of rlhf_prep: options, the skip/strict report, input reading
// (plain or gzip, via zlib), UTF-8 validation, and the text -> token rules every subcommand uses.
//
// Bad-input policy (docs/DATA.md): each bad row is skipped and counted under a reason
// ("skipped_<reason>"), or, with strict, rejected by an rlhf::Error "FILE:LINE: problem".
// Over-length rows follow OverLength: Truncate (default; prompts keep their END, responses their
// START; counted as truncated_prompt / truncated_response) or Skip (reasons prompt_too_long /
// response_too_long). An "empty" field has no characters at all; whitespace-only text is kept
// (hh-rlhf has one-space rejected replies that are genuine bad answers).
// Used by the rlhf_prep commands (src/tools/prep/) and their tests; single-threaded.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/data/data.h"
#include "common/tokenizer/tokenizer.h"

namespace rlhf {

enum class SourceFormat { Jsonl, Messages, OasstTree, HhRlhf };
inline constexpr EnumNames<SourceFormat, 4> kSourceFormatNames{{{SourceFormat::Jsonl, "jsonl"},
    {SourceFormat::Messages, "messages"}, {SourceFormat::OasstTree, "oasst-tree"},
    {SourceFormat::HhRlhf, "hh-rlhf"}}};
SourceFormat parse_source_format(const std::string& s);  // jsonl | messages | oasst-tree | hh-rlhf
const char* source_format_name(SourceFormat f);

enum class OverLength { Truncate, Skip };
inline constexpr EnumNames<OverLength, 2> kOverLengthNames{{{OverLength::Truncate, "truncate"},
    {OverLength::Skip, "skip"}}};
OverLength parse_over_length(const std::string& s);  // "truncate" | "skip"

struct PrepOptions {
  std::vector<std::string> inputs;  // --in (repeatable)
  std::string out;                  // --out FILE.h5
  std::string tokenizer = "byte";   // --tokenizer
  SourceFormat format = SourceFormat::Jsonl;
  int64_t max_prompt_tokens = 0;    // 0 = unlimited
  int64_t max_response_tokens = 0;  // 0 = unlimited
  OverLength over_length = OverLength::Truncate;
  bool strict = false;
  bool paragraphs = false;  // pretrain: blank-line separated paragraphs are documents
  // --chat-template: "" = plain text rows (jsonl / hh-rlhf only); else auto | NAME | FILE.jinja,
  // and every row becomes a conversation rendered by that template (docs/DATA.md).
  std::string chat_template;
  // Field names (--prompt-key ...): jsonl's text fields and messages' lists.
  std::string prompt_key = "prompt", response_key = "response", chosen_key = "chosen",
              rejected_key = "rejected", messages_key = "messages";
  bool chat() const { return !chat_template.empty(); }
};

// Counters of one prep run. rows_read / rows_written always exist.
class PrepReport {
 public:
  explicit PrepReport(bool strict) : strict_(strict) {
    counts_["rows_read"] = 0;
    counts_["rows_written"] = 0;
  }
  bool strict() const { return strict_; }
  void add(const std::string& key, int64_t n = 1) { counts_[key] += n; }
  // Counts skipped_<reason>, or throws "where: problem" in strict mode.
  void skip(const std::string& reason, const std::string& where, const std::string& problem);
  // A response dropped from a ranked group (dropped_response_<reason>); strict throws likewise.
  void drop_response(const std::string& reason, const std::string& where,
                     const std::string& problem);
  // Input-level problems (e.g. trailing_data_after_gzip): counted under `key`, thrown in strict mode.
  void input_problem(const std::string& key, const std::string& where, const std::string& problem) {
    count(key, where, problem);
  }
  int64_t get(const std::string& key) const;
  const std::map<std::string, int64_t>& counts() const { return counts_; }
  // One "key = value" per line; skip/drop counters name their first row ("first: where: problem").
  std::string summary() const;

 private:
  void count(const std::string& key, const std::string& where, const std::string& problem);
  bool strict_;
  std::map<std::string, int64_t> counts_;
  std::map<std::string, std::string> first_;  // counter -> "where: problem" of its first row
};

// Whole file content. A file starting with the gzip magic (1f 8b) is inflated member by member
// (concatenated members are one stream, as gunzip reads them); a truncated or corrupt stream is an
// error naming the file; bytes after the last member that are not another member are
// "trailing_data_after_gzip" in `rep` (an error under --strict, counted otherwise). Plain files
// pass through unchanged.
std::string read_input_file(const std::string& path, PrepReport& rep);
// Calls fn(line_number, line) for every line (1-based; '\r\n' endings stripped).
void for_each_line(const std::string& path, PrepReport& rep,
                   const std::function<void(int64_t, const std::string&)>& fn);
bool valid_utf8(const std::string& s);
std::string where(const std::string& file, int64_t line);  // "file:line"

// Text rows produced by the source adapters.
struct TextPair {
  std::string prompt, response, where;
};
struct TextGroup {
  std::string prompt;
  std::vector<std::string> responses;
  std::vector<int32_t> ranks;  // 0 = best
  std::string where;
};

// Conversations (chat rows, chat_sources.cpp): messages are {"role", "content"} lists.
struct ChatRow {  // sft: a conversation with >= 1 assistant turn; prompts: ends with a user turn
  nlohmann::ordered_json messages;
  std::string where;
};
struct ChatGroup {  // ranked: a shared prompt, K replies (each a list of messages) and ranks
  nlohmann::ordered_json prompt;
  std::vector<nlohmann::ordered_json> responses;
  std::vector<int32_t> ranks;
  std::string where;
};

// The length rules on already-encoded ids (prompt keeps its END, response its START; skip mode
// counts prompt_too_long / response_too_long); false = row (or, in_group, response) dropped.
bool limit_prompt(const PrepOptions& o, PrepReport& rep, const std::string& where,
                  std::vector<int32_t>* ids);
bool limit_response(const PrepOptions& o, PrepReport& rep, const std::string& where, bool in_group,
                    std::vector<int32_t>* ids);

// Applies the empty / UTF-8 / length rules to one prompt; false = row skipped (counted).
bool tokenize_prompt(const Tokenizer& tok, const PrepOptions& o, PrepReport& rep,
                     const std::string& text, const std::string& where, std::vector<int32_t>* ids);
// Same for a response. In a ranked group (in_group) a bad response is dropped, not the row.
bool tokenize_response(const Tokenizer& tok, const PrepOptions& o, PrepReport& rep,
                       const std::string& text, const std::string& where, bool in_group,
                       std::vector<int32_t>* ids);

// Fills the dataset attributes shared by every kind from the tokenizer and the report.
DatasetMeta make_meta(const Tokenizer& tok, const std::string& source, const PrepReport& rep);

}  // namespace rlhf
