// hf_bpe.cpp — see hf_bpe.h.
#include "common/tokenizer/hf_bpe.h"

#include <functional>
#include <queue>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/core/check.h"
#include "common/tokenizer/text.h"

namespace rlhf::hf {
namespace {

constexpr size_t kMaxCachedWord = 256;
constexpr size_t kMaxCacheEntries = 1 << 14;  // per shard; a shard is cleared when full

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// Ids beyond this are refused: vocabularies in use stay under 2^20 (Gemma's 262k is the largest).
constexpr int64_t kMaxTokenId = int64_t{1} << 24;

std::string opt_str(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

}  // namespace

BpeModel::BpeModel(const nlohmann::json& m, const JsonAt& at) {
  RLHF_CHECK(m.is_object(), "{}: expected an object", at.str());
  const std::string type = m.value("type", std::string("BPE"));
  if (type != "BPE")
    throw Error(fmt::format("{}: unsupported model type '{}' (supported: BPE)", at.at("type").str(),
                            type));
  RLHF_CHECK(!m.contains("dropout") || m["dropout"].is_null() || m["dropout"].get<double>() == 0.0,
             "{}: BPE dropout {} is not supported (it makes encoding random)",
             at.at("dropout").str(), m["dropout"].dump());
  RLHF_CHECK(m.contains("vocab") && m["vocab"].is_object(), "{}: missing object 'vocab'",
             at.str());
  for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it) {
    RLHF_CHECK(it.value().is_number_integer() && it.value().get<int64_t>() >= 0 &&
                   it.value().get<int64_t>() < kMaxTokenId,
               "{}: token '{}' has id {}, expected an integer in [0, {})",
               at.at("vocab").str(), it.key(), it.value().dump(), kMaxTokenId);
    const auto id = it.value().get<int32_t>();
    if (static_cast<size_t>(id) >= id_to_token_.size()) id_to_token_.resize(id + 1);
    id_to_token_[id] = it.key();
    vocab_.emplace(it.key(), id);
  }
  prefix_ = opt_str(m, "continuing_subword_prefix");
  suffix_ = opt_str(m, "end_of_word_suffix");
  fuse_unk_ = m.value("fuse_unk", false);
  byte_fallback_ = m.value("byte_fallback", false);
  ignore_merges_ = m.value("ignore_merges", false);
  if (const std::string unk = opt_str(m, "unk_token"); !unk.empty()) {
    unk_ = id_of(unk);
    RLHF_CHECK(unk_ >= 0, "{}: unk_token '{}' is not in the vocabulary", at.at("unk_token").str(),
               unk);
  }
  for (int b = 0; b < 256; ++b) byte_ids_[b] = id_of(fmt::format("<0x{:02X}>", b));

  const auto& merges = m.contains("merges") ? m["merges"] : nlohmann::json::array();
  RLHF_CHECK(merges.is_array(), "{}: 'merges' must be a list", at.str());
  merges_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto& e = merges[r];
    std::string a, b;
    if (e.is_string()) {
      const std::string s = e.get<std::string>();
      const size_t sp = s.find(' ');
      RLHF_CHECK(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos,
                 "{}: expected \"left right\", got '{}'", at.at("merges").at(r).str(), s);
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else {
      RLHF_CHECK(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string(),
                 "{}: expected \"left right\" or [left, right], got {}",
                 at.at("merges").at(r).str(), e.dump());
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    }
    const int32_t ia = id_of(a), ib = id_of(b);
    std::string ab = a + (b.compare(0, prefix_.size(), prefix_) == 0 ? b.substr(prefix_.size()) : b);
    const int32_t im = id_of(ab);
    RLHF_CHECK(ia >= 0 && ib >= 0 && im >= 0,
               "{}: merge ('{}', '{}') uses or makes a token missing from the vocabulary",
               at.at("merges").at(r).str(), a, b);
    merges_.emplace(pair_key(ia, ib), std::make_pair(static_cast<int32_t>(r), im));
  }
}

int32_t BpeModel::id_of(const std::string& t) const {
  auto it = vocab_.find(t);
  return it == vocab_.end() ? -1 : it->second;
}

const std::string* BpeModel::token_of(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return nullptr;
  const std::string& t = id_to_token_[id];
  return t.empty() && id_of(t) != id ? nullptr : &t;
}

uint64_t BpeModel::dropped() const {
  uint64_t n = 0;
  for (size_t s = 0; s < kShards; ++s) {
    std::lock_guard<std::mutex> lock(mu_[s]);
    n += dropped_[s];
  }
  return n;
}

void BpeModel::tokenize(const std::string& word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (const int32_t id = id_of(word); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  if (word.size() > kMaxCachedWord) {
    merge_word(word, out);
    return;
  }
  const size_t shard = std::hash<std::string>{}(word) % kShards;
  {
    std::lock_guard<std::mutex> lock(mu_[shard]);
    auto it = cache_[shard].find(word);
    if (it != cache_[shard].end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  merge_word(word, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(mu_[shard]);
  if (cache_[shard].size() >= kMaxCacheEntries) cache_[shard].clear();
  cache_[shard].emplace(word, std::move(ids));
}

void BpeModel::merge_word(const std::string& word, std::vector<int32_t>& out) const {
  // 1. One symbol per character (prefix on all but the first, suffix on the last).
  std::vector<int32_t> sym;
  sym.reserve(word.size());
  int32_t pending_unk = -1;  // a fused unk run not yet emitted
  uint64_t dropped = 0;
  std::string s;
  for (size_t i = 0; i < word.size();) {
    const size_t b = i;
    text::next_codepoint(word, i);
    s.assign(b == 0 ? "" : prefix_);
    s.append(word, b, i - b);
    if (i == word.size()) s += suffix_;
    if (const int32_t id = id_of(s); id >= 0) {
      if (pending_unk >= 0) sym.push_back(pending_unk);
      pending_unk = -1;
      sym.push_back(id);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (size_t k = b; k < i; ++k) all = all && byte_ids_[static_cast<unsigned char>(word[k])] >= 0;
      if (all) {
        for (size_t k = b; k < i; ++k) sym.push_back(byte_ids_[static_cast<unsigned char>(word[k])]);
        continue;
      }
    }
    if (unk_ >= 0) {
      if (pending_unk >= 0 && !fuse_unk_) sym.push_back(pending_unk);
      pending_unk = unk_;
    } else {
      ++dropped;
    }
  }
  if (pending_unk >= 0) sym.push_back(pending_unk);
  if (dropped > 0) {
    const size_t shard = std::hash<std::string>{}(word) % kShards;
    std::lock_guard<std::mutex> lock(mu_[shard]);
    dropped_[shard] += dropped;
  }
  // 2. Merges, lowest rank first, leftmost on ties.
  const int n = static_cast<int>(sym.size());
  std::vector<int> next(n), prev(n);
  for (int i = 0; i < n; ++i) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  struct Cand {
    int32_t rank, pos, merged;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> q;
  auto push = [&](int pos) {
    if (pos < 0 || next[pos] < 0) return;
    auto it = merges_.find(pair_key(sym[pos], sym[next[pos]]));
    if (it != merges_.end()) q.push({it->second.first, pos, it->second.second});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  std::vector<bool> dead(n, false);
  while (!q.empty()) {
    const Cand c = q.top();
    q.pop();
    if (dead[c.pos] || next[c.pos] < 0) continue;
    const int nx = next[c.pos];
    auto it = merges_.find(pair_key(sym[c.pos], sym[nx]));
    if (it == merges_.end() || it->second.second != c.merged) continue;
    sym[c.pos] = c.merged;
    dead[nx] = true;
    next[c.pos] = next[nx];
    if (next[nx] >= 0) prev[next[nx]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  for (int i = 0; i < n; ++i)
    if (!dead[i]) out.push_back(sym[i]);
}

}  // namespace rlhf::hf
