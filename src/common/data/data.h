// data.h — tokenized datasets (HDF5) and the sharded, seeded sampler.
//
// File format (format_version 1), written by rlhf_prep, read by every trainer and rlhf_eval:
//   ragged array <name>: <name>/tokens int32 [total]  +  <name>/offsets int64 [n + 1]
//                        (offsets[0] = 0, non-decreasing, offsets[n] = total); row i is
//                        tokens[offsets[i] : offsets[i+1]].
//   kind sft      : prompt (ragged, n)  + response (ragged, n)
//                   [+ targets (ragged, n): per row, pairs [begin, end) of response positions
//                   that are loss targets, increasing and disjoint; absent = the whole response.
//                   Chat rows have it: only the assistant turns (with their end-of-turn) are.]
//   kind ranked   : prompt (ragged, G)  + responses (ragged, R) + group_offsets int64 [G + 1]
//                   (group g owns responses [group_offsets[g], group_offsets[g+1]), K >= 2)
//                   + ranks int32 [R] (0 = best; ties allowed; never all tied within a group)
//   kind prompts  : prompt (ragged, n)
//   kind pretrain : tokens int32 [T] (one stream; documents separated by the EOS id)
// Root attributes: format_version, kind, tokenizer (identity), tokenizer_spec, vocab_size,
//   source, n_examples (rows; groups for ranked; tokens for pretrain), n_responses (ranked),
//   n_tokens, and the prep report: one int64 attribute per report key, the key list in
//   report_keys (comma separated; e.g. rows_read, rows_written, skipped_<reason>,
//   truncated_prompt, truncated_response).
// Chat rows (written with a chat template, docs/DATA.md): root attributes chat_template (the
//   Jinja text), chat_template_name and end_of_turn (the id that ends an assistant turn; -1 when
//   the template has no single-token end of turn, then EOS follows every assistant turn).
//   Absent / "" = plain rows.
// Framing: plain rows never include BOS/EOS around rows: trainers add them (SpecialIds in
// batch.h). Chat rows are complete — the template wrote BOS (if any) and every turn's end — so
// trainers add nothing. Pretrain streams contain EOS between documents.
//
// Loading: X::load(path, expected_identity) reads the whole file into memory (any rank may call
// it); it throws rlhf::Error for a missing/foreign/truncated file, a wrong kind, a tokenizer
// identity different from a non-empty expected_identity, or inconsistent offsets/ids.
// Saving (rank 0 / rlhf_prep only): X::save(path) writes "<path>.tmp" then renames it.
//
// Sampling: ShardedSampler walks a seeded per-epoch permutation of [0, n); next(global_batch)
// returns this rank's contiguous share of the next global slice. The unit is a row (sft,
// prompts) or a prompt group (ranked). Cursor {epoch, position} restores the exact stream.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/core/strings.h"

namespace rlhf {

constexpr int64_t kDataFormatVersion = 1;

enum class DataKind { Sft, Ranked, Prompts, Pretrain };
inline constexpr EnumNames<DataKind, 4> kDataKindNames{{{DataKind::Sft, "sft"},
    {DataKind::Ranked, "ranked"}, {DataKind::Prompts, "prompts"}, {DataKind::Pretrain, "pretrain"}}};
const char* data_kind_name(DataKind k);
DataKind parse_data_kind(const std::string& s);  // throws naming the bad value

// A list of variable-length token rows stored flat.
struct Ragged {
  std::vector<int32_t> tokens;
  std::vector<int64_t> offsets{0};

  int64_t size() const { return static_cast<int64_t>(offsets.size()) - 1; }
  int64_t row_len(int64_t i) const;
  const int32_t* row_data(int64_t i) const;
  std::vector<int32_t> row(int64_t i) const;
  void push(const std::vector<int32_t>& r);
};

// Root attributes shared by every kind.
struct DatasetMeta {
  std::string path;                // file it was loaded from (empty before save)
  DataKind kind = DataKind::Sft;   // set by the typed reader/writer
  int64_t format_version = kDataFormatVersion;
  std::string tokenizer;           // Tokenizer::identity()
  std::string tokenizer_spec;      // Tokenizer::spec()
  int64_t vocab_size = 0;          // every stored id is in [0, vocab_size)
  std::string source;              // "synth", "jsonl", "oasst-tree", "hh-rlhf", "text", ...
  std::map<std::string, int64_t> report;  // prep report (rows_read, skipped_<reason>, ...)
  std::string chat_template;       // "" = plain rows; else the template the rows were rendered by
  std::string chat_template_name;  // a built-in name, a file, or "<tokenizer_config>:chat_template"
  int64_t end_of_turn = -1;        // chat: the id ending an assistant turn (-1: EOS follows it)
  bool chat() const { return !chat_template.empty(); }
};

// One prompt + response pair as views into a dataset's token storage (valid while it lives).
struct PromptResponse {
  const int32_t* prompt;
  int64_t prompt_len;
  const int32_t* response;
  int64_t response_len;
  // Loss targets within the response: spans_len/2 pairs [begin, end); nullptr = all of it.
  const int32_t* spans = nullptr;
  int64_t spans_len = 0;
};

struct SftData {
  DatasetMeta meta;
  Ragged prompt, response;  // same count
  Ragged targets;           // empty (whole responses are targets) or one span row per example
  bool has_targets() const { return targets.size() > 0; }
  int64_t size() const { return prompt.size(); }
  PromptResponse row(int64_t i) const;  // example i (checked)
  static SftData load(const std::string& path, const std::string& expected_tokenizer_identity = "");
  void save(const std::string& path) const;
};

struct RankedData {
  DatasetMeta meta;
  Ragged prompt;                       // one per group
  Ragged responses;                    // all responses, grouped
  std::vector<int64_t> group_offsets{0};  // [G + 1]
  std::vector<int32_t> ranks;          // [R], 0 = best
  int64_t size() const { return prompt.size(); }  // number of groups
  int64_t group_size(int64_t g) const;
  int64_t first_response(int64_t g) const;  // group g's responses are
  int64_t end_response(int64_t g) const;    // [first_response(g), end_response(g))
  // Group g's K rows (its prompt with each of its responses, in stored order).
  std::vector<PromptResponse> group_rows(int64_t g) const;
  // Appends one group (prompt + K responses with ranks); checks K >= 2 and sizes match.
  void push_group(const std::vector<int32_t>& p, const std::vector<std::vector<int32_t>>& rs,
                  const std::vector<int32_t>& rk);
  static RankedData load(const std::string& path,
                         const std::string& expected_tokenizer_identity = "");
  void save(const std::string& path) const;
};

struct PromptData {
  DatasetMeta meta;
  Ragged prompt;
  int64_t size() const { return prompt.size(); }
  static PromptData load(const std::string& path,
                         const std::string& expected_tokenizer_identity = "");
  void save(const std::string& path) const;
};

struct PretrainData {
  DatasetMeta meta;
  std::vector<int32_t> tokens;
  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
  static PretrainData load(const std::string& path,
                           const std::string& expected_tokenizer_identity = "");
  void save(const std::string& path) const;
};

// Reads only the root attributes (kind included) of any dataset file; same error rules.
DatasetMeta load_dataset_meta(const std::string& path);

// ---- sampling ------------------------------------------------------------------------
struct Cursor {
  int64_t epoch = 0;     // epochs completed
  int64_t position = 0;  // next index into the epoch permutation, in [0, n)
  bool operator==(const Cursor& o) const { return epoch == o.epoch && position == o.position; }
};

class ShardedSampler {
 public:
  // n examples (> 0); rank in [0, world). Every rank must construct it with the same n and seed.
  ShardedSampler(int64_t n, uint64_t seed, int rank, int world);
  // The next global_batch positions of the stream (wrapping into the next epoch's permutation
  // as needed); returns this rank's share [rank*gb/world, (rank+1)*gb/world) of that slice and
  // advances the cursor by global_batch. Throws unless global_batch > 0 and divisible by world.
  std::vector<int64_t> next(int64_t global_batch);
  // Permutation of [0, n) used in `epoch` (seeded by seed and epoch; platform-independent).
  std::vector<int64_t> permutation(int64_t epoch) const;
  Cursor cursor() const { return cursor_; }
  void set_cursor(const Cursor& c);  // throws if position is out of [0, n) or epoch < 0
  int64_t size() const { return n_; }

 private:
  int64_t n_;
  uint64_t seed_;
  int rank_, world_;
  Cursor cursor_;
  int64_t perm_epoch_ = -1;
  std::vector<int64_t> perm_;  // cached permutation of perm_epoch_
};

}  // namespace rlhf
