#include "common/data/data.h"

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include <unistd.h>

#include "common/core/check.h"
#include "common/core/fs.h"
#include "common/core/rng.h"
#include "common/core/h5.h"

namespace rlhf {

const char* data_kind_name(DataKind k) { return kDataKindNames.name(k); }

DataKind parse_data_kind(const std::string& s) { return kDataKindNames.parse(s, "dataset kind"); }

// ---- Ragged ---------------------------------------------------------------------------
int64_t Ragged::row_len(int64_t i) const {
  RLHF_CHECK(i >= 0 && i < size(), "ragged row {} out of range [0, {})", i, size());
  return offsets[i + 1] - offsets[i];
}
const int32_t* Ragged::row_data(int64_t i) const {
  RLHF_CHECK(i >= 0 && i < size(), "ragged row {} out of range [0, {})", i, size());
  return tokens.data() + offsets[i];
}
std::vector<int32_t> Ragged::row(int64_t i) const {
  const int32_t* p = row_data(i);
  return std::vector<int32_t>(p, p + row_len(i));
}
void Ragged::push(const std::vector<int32_t>& r) {
  tokens.insert(tokens.end(), r.begin(), r.end());
  offsets.push_back(static_cast<int64_t>(tokens.size()));
}

// ---- writing --------------------------------------------------------------------------
namespace {

void write_ragged(H5File& f, const std::string& name, const Ragged& r) {
  f.write_vector(name + "/tokens", r.tokens);
  f.write_vector(name + "/offsets", r.offsets);
}

void write_meta(H5File& f, const DatasetMeta& m, DataKind kind, int64_t n_examples,
                int64_t n_responses, int64_t n_tokens) {
  f.set_attr("format_version", kDataFormatVersion);
  f.set_attr("kind", std::string(data_kind_name(kind)));
  f.set_attr("tokenizer", m.tokenizer);
  f.set_attr("tokenizer_spec", m.tokenizer_spec);
  f.set_attr("vocab_size", m.vocab_size);
  f.set_attr("source", m.source);
  f.set_attr("n_examples", n_examples);
  if (kind == DataKind::Ranked) f.set_attr("n_responses", n_responses);
  f.set_attr("n_tokens", n_tokens);
  std::string keys;
  for (const auto& [k, v] : m.report) {
    RLHF_CHECK(k.find(',') == std::string::npos, "report key '{}' may not contain ','", k);
    keys += (keys.empty() ? "" : ",") + k;
    f.set_attr(k, v);
  }
  f.set_attr("report_keys", keys);
  if (m.chat()) {
    f.set_attr("chat_template", m.chat_template);
    f.set_attr("chat_template_name", m.chat_template_name);
    f.set_attr("end_of_turn", m.end_of_turn);
  }
}

// Writes through a temporary file, fsync and rename (core/fs.h): a crash never leaves a
// half-written .h5 and a failed write leaves the previous file untouched.
template <class Fn>
void atomic_write(const std::string& path, Fn&& fn) {
  replace_file_atomic(path, [&](const std::string& tmp) {
    H5File f = H5File::create(tmp);
    fn(f);
    f.close();
  });
}

void check_ids(const std::vector<int32_t>& ids, const DatasetMeta& m, const std::string& what) {
  for (size_t i = 0; i < ids.size(); ++i)
    RLHF_CHECK(ids[i] >= 0 && ids[i] < m.vocab_size,
               "{}: token id {} at {}[{}] is outside the vocabulary [0, {}) of tokenizer '{}'",
               m.path, ids[i], what, i, m.vocab_size, m.tokenizer);
}

void check_ragged_consistent(const Ragged& r, const DatasetMeta& m, const std::string& name) {
  RLHF_CHECK(!r.offsets.empty() && r.offsets.front() == 0,
             "{}: '{}/offsets' must start with 0 (corrupt file?)", m.path, name);
  for (size_t i = 1; i < r.offsets.size(); ++i)
    RLHF_CHECK(r.offsets[i] >= r.offsets[i - 1], "{}: '{}/offsets' decreases at {} (corrupt file?)",
               m.path, name, i);
  RLHF_CHECK(r.offsets.back() == static_cast<int64_t>(r.tokens.size()),
             "{}: '{}/offsets' ends at {} but '{}/tokens' has {} ids (corrupt file?)", m.path, name,
             r.offsets.back(), name, r.tokens.size());
  check_ids(r.tokens, m, name + "/tokens");
}

}  // namespace

// ---- reading --------------------------------------------------------------------------
// The dataset file `path`, opened for reading; a JSON / JSONL file (the source data, not yet
// prepared) is refused with the command that prepares it: `rlhf_prep <prep> --in PATH --out ...`.
static H5File open_dataset(const std::string& path, const char* prep) {
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    int c = 0;
    while ((c = std::fgetc(f)) != EOF && std::isspace(c)) {
    }
    std::fclose(f);
    const std::string out = std::filesystem::path(path).replace_extension(".h5").string();
    RLHF_CHECK(c != '{' && c != '[' && c != '"', "'{}' is JSON (source rows), not a dataset: prepare it "
               "once with `rlhf_prep {} --in {} --out {}` (add --format messages and --chat-template "
               "for conversations; docs/DATA.md) and give the .h5", path, prep, path, out);
  }
  return H5File::open_read(path);
}

static DatasetMeta read_meta(const H5File& f) {
  DatasetMeta m;
  m.path = f.path();
  RLHF_CHECK(f.has_attr("format_version") && f.has_attr("kind"),
             "{}: not an rlhf dataset (no 'format_version'/'kind' attributes); write datasets "
             "with rlhf_prep", f.path());
  m.format_version = f.attr_int("format_version");
  RLHF_CHECK(m.format_version == kDataFormatVersion,
             "{}: dataset format_version {} is not supported (this build reads {})", f.path(),
             m.format_version, kDataFormatVersion);
  std::string kind = f.attr_string("kind");
  try {
    m.kind = parse_data_kind(kind);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", f.path(), e.what()));
  }
  m.tokenizer = f.attr_string("tokenizer");
  m.tokenizer_spec = f.attr_string("tokenizer_spec");
  m.vocab_size = f.attr_int("vocab_size");
  m.source = f.attr_string("source");
  std::string keys = f.attr_string("report_keys");
  std::stringstream ss(keys);
  std::string k;
  while (std::getline(ss, k, ','))
    if (!k.empty()) m.report[k] = f.attr_int(k);
  if (f.has_attr("chat_template")) {
    m.chat_template = f.attr_string("chat_template");
    m.chat_template_name = f.attr_string("chat_template_name");
    m.end_of_turn = f.attr_int("end_of_turn");
    RLHF_CHECK(m.end_of_turn >= -1 && m.end_of_turn < m.vocab_size,
               "{}: end_of_turn {} is outside the vocabulary [0, {})", f.path(), m.end_of_turn,
               m.vocab_size);
  }
  return m;
}

DatasetMeta load_dataset_meta(const std::string& path) {
  H5File f = open_dataset(path, "sft|ranked|prompts|pretrain");
  return read_meta(f);
}

static DatasetMeta open_checked(const H5File& f, DataKind expected, const std::string& identity) {
  DatasetMeta m = read_meta(f);
  RLHF_CHECK(m.kind == expected, "{}: dataset kind is '{}' but a '{}' dataset was expected",
             f.path(), data_kind_name(m.kind), data_kind_name(expected));
  RLHF_CHECK(identity.empty() || identity == m.tokenizer,
             "{}: dataset was tokenized with '{}' but the model's tokenizer is '{}'; re-run "
             "rlhf_prep with the model's tokenizer", f.path(), m.tokenizer, identity);
  return m;
}

static Ragged read_ragged(const H5File& f, const DatasetMeta& m, const std::string& name) {
  RLHF_CHECK(f.has(name + "/tokens") && f.has(name + "/offsets"),
             "{}: ragged array '{}' missing ('{}/tokens' and '{}/offsets' expected)", f.path(),
             name, name, name);
  Ragged r;
  r.tokens = f.read_vector<int32_t>(name + "/tokens");
  r.offsets = f.read_vector<int64_t>(name + "/offsets");
  check_ragged_consistent(r, m, name);
  return r;
}

// The optional target spans of an sft file: one row per response, pairs [begin, end) that are
// increasing, disjoint and within the response.
static Ragged read_spans(const H5File& f, const DatasetMeta& m, const Ragged& response) {
  Ragged r;
  r.tokens = f.read_vector<int32_t>("targets/tokens");
  r.offsets = f.read_vector<int64_t>("targets/offsets");
  RLHF_CHECK(r.size() == response.size(), "{}: {} target rows for {} responses (corrupt file?)",
             m.path, r.size(), response.size());
  for (int64_t i = 0; i < r.size(); ++i) {
    RLHF_CHECK(r.offsets[i + 1] >= r.offsets[i] && r.offsets[i + 1] <= static_cast<int64_t>(r.tokens.size()) &&
                   (r.offsets[i + 1] - r.offsets[i]) % 2 == 0,
               "{}: 'targets/offsets' row {} is not an even-length slice (corrupt file?)", m.path, i);
    int64_t prev = 0;
    for (int64_t k = r.offsets[i]; k < r.offsets[i + 1]; k += 2) {
      const int64_t b = r.tokens[k], e = r.tokens[k + 1];
      RLHF_CHECK(b >= prev && e > b && e <= response.row_len(i),
                 "{}: target span [{}, {}) of row {} is not increasing within its {} response "
                 "tokens (corrupt file?)", m.path, b, e, i, response.row_len(i));
      prev = e;
    }
  }
  RLHF_CHECK(r.offsets.front() == 0 && r.offsets.back() == static_cast<int64_t>(r.tokens.size()),
             "{}: 'targets/offsets' does not cover 'targets/tokens' (corrupt file?)", m.path);
  return r;
}

SftData SftData::load(const std::string& path, const std::string& identity) {
  H5File f = open_dataset(path, "sft");
  SftData d;
  d.meta = open_checked(f, DataKind::Sft, identity);
  d.prompt = read_ragged(f, d.meta, "prompt");
  d.response = read_ragged(f, d.meta, "response");
  RLHF_CHECK(d.prompt.size() == d.response.size(), "{}: {} prompts but {} responses", path,
             d.prompt.size(), d.response.size());
  if (f.has("targets/tokens")) d.targets = read_spans(f, d.meta, d.response);
  return d;
}

void SftData::save(const std::string& path) const {
  RLHF_CHECK(prompt.size() == response.size(), "SftData::save '{}': {} prompts but {} responses",
             path, prompt.size(), response.size());
  RLHF_CHECK(!has_targets() || targets.size() == size(),
             "SftData::save '{}': {} target rows for {} examples", path, targets.size(), size());
  atomic_write(path, [&](H5File& f) {
    write_ragged(f, "prompt", prompt);
    write_ragged(f, "response", response);
    if (has_targets()) write_ragged(f, "targets", targets);
    write_meta(f, meta, DataKind::Sft, size(), 0,
               static_cast<int64_t>(prompt.tokens.size() + response.tokens.size()));
  });
}

int64_t RankedData::group_size(int64_t g) const {
  RLHF_CHECK(g >= 0 && g < size(), "ranked group {} out of range [0, {})", g, size());
  return group_offsets[g + 1] - group_offsets[g];
}
int64_t RankedData::first_response(int64_t g) const {
  RLHF_CHECK(g >= 0 && g < size(), "ranked group {} out of range [0, {})", g, size());
  return group_offsets[g];
}
int64_t RankedData::end_response(int64_t g) const {
  RLHF_CHECK(g >= 0 && g < size(), "ranked group {} out of range [0, {})", g, size());
  return group_offsets[g + 1];
}
std::vector<PromptResponse> RankedData::group_rows(int64_t g) const {
  std::vector<PromptResponse> rows;
  for (int64_t r = first_response(g); r < end_response(g); ++r)
    rows.push_back({prompt.row_data(g), prompt.row_len(g), responses.row_data(r),
                    responses.row_len(r)});
  return rows;
}
PromptResponse SftData::row(int64_t i) const {
  RLHF_CHECK(i >= 0 && i < size(), "sft example {} out of range [0, {})", i, size());
  PromptResponse r{prompt.row_data(i), prompt.row_len(i), response.row_data(i), response.row_len(i)};
  if (has_targets()) {
    r.spans = targets.row_data(i);
    r.spans_len = targets.row_len(i);
  }
  return r;
}

void RankedData::push_group(const std::vector<int32_t>& p,
                            const std::vector<std::vector<int32_t>>& rs,
                            const std::vector<int32_t>& rk) {
  RLHF_CHECK(rs.size() >= 2, "ranked group needs K >= 2 responses, got {}", rs.size());
  RLHF_CHECK(rs.size() == rk.size(), "ranked group has {} responses but {} ranks", rs.size(),
             rk.size());
  prompt.push(p);
  for (const auto& r : rs) responses.push(r);
  ranks.insert(ranks.end(), rk.begin(), rk.end());
  group_offsets.push_back(responses.size());
}

RankedData RankedData::load(const std::string& path, const std::string& identity) {
  H5File f = open_dataset(path, "ranked");
  RankedData d;
  d.meta = open_checked(f, DataKind::Ranked, identity);
  d.prompt = read_ragged(f, d.meta, "prompt");
  d.responses = read_ragged(f, d.meta, "responses");
  RLHF_CHECK(f.has("group_offsets") && f.has("ranks"), "{}: 'group_offsets' or 'ranks' missing",
             path);
  d.group_offsets = f.read_vector<int64_t>("group_offsets");
  d.ranks = f.read_vector<int32_t>("ranks");
  const auto& go = d.group_offsets;
  RLHF_CHECK(static_cast<int64_t>(go.size()) == d.prompt.size() + 1,
             "{}: 'group_offsets' has {} entries, expected {} (groups + 1)", path, go.size(),
             d.prompt.size() + 1);
  RLHF_CHECK(go.front() == 0 && go.back() == d.responses.size(),
             "{}: 'group_offsets' must run from 0 to {} responses", path, d.responses.size());
  RLHF_CHECK(static_cast<int64_t>(d.ranks.size()) == d.responses.size(),
             "{}: {} ranks for {} responses", path, d.ranks.size(), d.responses.size());
  for (int64_t g = 0; g < d.size(); ++g) {
    RLHF_CHECK(go[g + 1] - go[g] >= 2, "{}: group {} has K = {} (< 2)", path, g, go[g + 1] - go[g]);
    bool all_tied = true;
    for (int64_t j = go[g]; j < go[g + 1]; ++j) {
      RLHF_CHECK(d.ranks[j] >= 0, "{}: negative rank {} in group {}", path, d.ranks[j], g);
      all_tied = all_tied && d.ranks[j] == d.ranks[go[g]];
    }
    RLHF_CHECK(!all_tied, "{}: group {} has all ranks tied", path, g);
  }
  return d;
}

void RankedData::save(const std::string& path) const {
  RLHF_CHECK(static_cast<int64_t>(group_offsets.size()) == size() + 1 &&
                 static_cast<int64_t>(ranks.size()) == responses.size(),
             "RankedData::save '{}': inconsistent group_offsets/ranks", path);
  atomic_write(path, [&](H5File& f) {
    write_ragged(f, "prompt", prompt);
    write_ragged(f, "responses", responses);
    f.write_vector("group_offsets", group_offsets);
    f.write_vector("ranks", ranks);
    write_meta(f, meta, DataKind::Ranked, size(), responses.size(),
               static_cast<int64_t>(prompt.tokens.size() + responses.tokens.size()));
  });
}

PromptData PromptData::load(const std::string& path, const std::string& identity) {
  H5File f = open_dataset(path, "prompts");
  PromptData d;
  d.meta = open_checked(f, DataKind::Prompts, identity);
  d.prompt = read_ragged(f, d.meta, "prompt");
  return d;
}

void PromptData::save(const std::string& path) const {
  atomic_write(path, [&](H5File& f) {
    write_ragged(f, "prompt", prompt);
    write_meta(f, meta, DataKind::Prompts, size(), 0, static_cast<int64_t>(prompt.tokens.size()));
  });
}

PretrainData PretrainData::load(const std::string& path, const std::string& identity) {
  H5File f = open_dataset(path, "pretrain");
  PretrainData d;
  d.meta = open_checked(f, DataKind::Pretrain, identity);
  RLHF_CHECK(f.has("tokens"), "{}: dataset 'tokens' missing", path);
  d.tokens = f.read_vector<int32_t>("tokens");
  check_ids(d.tokens, d.meta, "tokens");
  return d;
}

void PretrainData::save(const std::string& path) const {
  atomic_write(path, [&](H5File& f) {
    f.write_vector("tokens", tokens);
    write_meta(f, meta, DataKind::Pretrain, size(), 0, size());
  });
}

// ---- sampler --------------------------------------------------------------------------
ShardedSampler::ShardedSampler(int64_t n, uint64_t seed, int rank, int world)
    : n_(n), seed_(seed), rank_(rank), world_(world) {
  RLHF_CHECK(n > 0, "ShardedSampler: dataset is empty (n = {})", n);
  RLHF_CHECK(world >= 1 && rank >= 0 && rank < world, "ShardedSampler: rank {} not in [0, {})",
             rank, world);
}

std::vector<int64_t> ShardedSampler::permutation(int64_t epoch) const {
  // Platform-independent (std::shuffle / std::uniform_int_distribution are implementation-defined).
  return seeded_permutation(n_, seed_ ^ (0xD1B54A32D192ED03ULL * static_cast<uint64_t>(epoch + 1)));
}

std::vector<int64_t> ShardedSampler::next(int64_t global_batch) {
  RLHF_CHECK(global_batch > 0 && global_batch % world_ == 0,
             "global batch {} must be positive and divisible by the number of ranks {}",
             global_batch, world_);
  int64_t lo = static_cast<int64_t>(rank_) * global_batch / world_;
  int64_t hi = static_cast<int64_t>(rank_ + 1) * global_batch / world_;
  std::vector<int64_t> out;
  out.reserve(hi - lo);
  for (int64_t k = 0; k < global_batch; ++k) {
    if (perm_epoch_ != cursor_.epoch) {
      perm_ = permutation(cursor_.epoch);
      perm_epoch_ = cursor_.epoch;
    }
    if (k >= lo && k < hi) out.push_back(perm_[cursor_.position]);
    if (++cursor_.position == n_) {
      cursor_.position = 0;
      ++cursor_.epoch;
    }
  }
  return out;
}

void ShardedSampler::set_cursor(const Cursor& c) {
  RLHF_CHECK(c.epoch >= 0 && c.position >= 0 && c.position < n_,
             "sampler cursor (epoch {}, position {}) invalid for a dataset of {} examples "
             "(resuming with a different dataset?)", c.epoch, c.position, n_);
  cursor_ = c;
}

}  // namespace rlhf
