// gpt2.cpp — GPT-2 byte-level BPE (vocab.json + merges.txt), exact against OpenAI's
// encoder.py: regex pre-tokenizer (PCRE2, UTF + UCP, JIT when available), bytes -> printable
// unicode mapping, merges applied lowest rank first (all occurrences of the best pair per pass).
// Invalid UTF-8: compiled with PCRE2_MATCH_INVALID_UTF, so the regex runs over the valid runs;
// each byte outside them becomes its own chunk (-> its single-byte token). Contract: tokenizer.h.
#include <array>
#include <climits>
#include <fstream>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/core/check.h"
#include "common/core/fs.h"
#include "common/tokenizer/regex.h"
#include "common/tokenizer/text.h"
#include "common/tokenizer/tokenizer.h"

namespace rlhf {
namespace {

constexpr size_t kMaxCachedWord = 256;      // longer chunks are not cached
constexpr size_t kMaxCacheEntries = 1 << 17;  // cleared when exceeded


uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

}  // namespace

struct Gpt2Tokenizer::Impl {
  std::string folder;
  std::vector<std::string> token_bytes;  // id -> raw bytes (through the byte decoder)
  std::array<int32_t, 256> byte_id{};    // byte -> id of its single-byte token
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a, b) -> (rank, merged)
  int32_t eot = -1;
  std::string identity;
  std::unique_ptr<Regex> re;
  mutable std::mutex mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  void compile_regex() { re = std::make_unique<Regex>(kGpt2Pattern, "gpt2 tokenizer"); }

  // Calls emit(begin, length) for each pre-token chunk, in order, covering all of text: the
  // regex's matches, and each byte between them (bytes that are not valid UTF-8) on its own.
  template <typename F>
  void split(const std::string& text, F&& emit) const {
    size_t off = 0;
    for (auto [mb, me] : re->find_all(text)) {
      for (; off < mb; ++off) emit(off, size_t{1});
      emit(mb, me - mb);
      off = me;
    }
    for (; off < text.size(); ++off) emit(off, size_t{1});
  }

  // BPE of one chunk of raw bytes; appends its ids to out.
  void bpe(const char* p, size_t n, std::vector<int32_t>& out) const {
    if (n == 1) {
      out.push_back(byte_id[static_cast<unsigned char>(p[0])]);
      return;
    }
    std::string key;
    if (n <= kMaxCachedWord) {
      key.assign(p, n);
      std::lock_guard<std::mutex> lock(mu);
      auto it = cache.find(key);
      if (it != cache.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> sym(n), next;
    for (size_t i = 0; i < n; ++i) sym[i] = byte_id[static_cast<unsigned char>(p[i])];
    while (sym.size() > 1) {
      int32_t best_rank = INT32_MAX, a = -1, b = -1, merged = -1;
      for (size_t i = 0; i + 1 < sym.size(); ++i) {
        auto it = merges.find(pair_key(sym[i], sym[i + 1]));
        if (it != merges.end() && it->second.first < best_rank) {
          best_rank = it->second.first;
          a = sym[i];
          b = sym[i + 1];
          merged = it->second.second;
        }
      }
      if (merged < 0) break;
      next.clear();
      for (size_t i = 0; i < sym.size();) {
        if (i + 1 < sym.size() && sym[i] == a && sym[i + 1] == b) {
          next.push_back(merged);
          i += 2;
        } else {
          next.push_back(sym[i++]);
        }
      }
      sym.swap(next);
    }
    out.insert(out.end(), sym.begin(), sym.end());
    if (!key.empty()) {
      std::lock_guard<std::mutex> lock(mu);
      if (cache.size() >= kMaxCacheEntries) cache.clear();
      cache.emplace(std::move(key), std::move(sym));
    }
  }
};

Gpt2Tokenizer::Gpt2Tokenizer() : impl_(std::make_unique<Impl>()) {}
Gpt2Tokenizer::~Gpt2Tokenizer() = default;

namespace {

// vocab.json: {"token in byte-level unicode": id}, ids must be exactly 0..N-1. Returns the tokens
// by id.
std::vector<std::string> read_vocab(const std::string& vocab_path) {
  nlohmann::json vocab;
  try {
    vocab = nlohmann::json::parse(read_file_bytes(vocab_path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("gpt2 tokenizer: '{}' is not valid JSON: {}", vocab_path, e.what()));
  }
  RLHF_CHECK(vocab.is_object() && !vocab.empty(),
             "gpt2 tokenizer: '{}' must be a non-empty JSON object {{token: id}}", vocab_path);
  const size_t n = vocab.size();
  std::vector<std::string> unicode_tok(n);
  std::vector<bool> seen(n, false);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    RLHF_CHECK(it.value().is_number_integer(), "gpt2 tokenizer: '{}': token '{}' has id {}, "
               "expected an integer", vocab_path, it.key(), it.value().dump());
    const int64_t id = it.value().get<int64_t>();
    RLHF_CHECK(id >= 0 && id < static_cast<int64_t>(n) && !seen[id],
               "gpt2 tokenizer: '{}': token '{}' has id {}, expected ids 0..{} each used once",
               vocab_path, it.key(), id, n - 1);
    seen[id] = true;
    unicode_tok[id] = it.key();
  }
  return unicode_tok;
}

// merges.txt: optional "#version" line, then "left right" per line, rank = order. Fills merges
// ((left, right) -> (rank, merged id)), folds each pair into the identity hash h; returns the count.
template <class Merges>
int32_t read_merges(const std::string& merges_path,
                    const std::unordered_map<std::string, int32_t>& tok_to_id, Merges& merges,
                    uint64_t& h) {
  std::ifstream mf(merges_path, std::ios::binary);
  std::string line;
  int32_t rank = 0;
  for (size_t line_no = 1; std::getline(mf, line); ++line_no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    const size_t sp = line.find(' ');
    RLHF_CHECK(sp != std::string::npos && sp > 0 && sp + 1 < line.size() &&
                   line.find(' ', sp + 1) == std::string::npos,
               "gpt2 tokenizer: '{}' line {}: expected 'left right', got '{}'", merges_path,
               line_no, line);
    const std::string left = line.substr(0, sp), right = line.substr(sp + 1);
    auto ia = tok_to_id.find(left), ib = tok_to_id.find(right), im = tok_to_id.find(left + right);
    RLHF_CHECK(ia != tok_to_id.end() && ib != tok_to_id.end() && im != tok_to_id.end(),
               "gpt2 tokenizer: '{}' line {}: merge '{}' uses or makes a token missing from "
               "vocab.json",
               merges_path, line_no, line);
    merges.emplace(pair_key(ia->second, ib->second), std::make_pair(rank++, im->second));
    const int32_t ab[2] = {ia->second, ib->second};
    h = detail::fnv1a64(ab, sizeof(ab), h);
  }
  return rank;
}

}  // namespace

std::unique_ptr<Gpt2Tokenizer> Gpt2Tokenizer::load(const std::string& folder) {
  const std::string vocab_path = folder + "/vocab.json";
  const std::string merges_path = folder + "/merges.txt";
  for (const auto& p : {vocab_path, merges_path})
    RLHF_CHECK(std::ifstream(p).good(),
               "gpt2 tokenizer folder '{}': missing or unreadable '{}' (a GPT-2 tokenizer "
               "folder needs vocab.json and merges.txt)",
               folder, p);
  std::unique_ptr<Gpt2Tokenizer> tok(new Gpt2Tokenizer());
  Impl& m = *tok->impl_;
  m.folder = folder;

  const std::vector<std::string> unicode_tok = read_vocab(vocab_path);
  const size_t n = unicode_tok.size();
  const auto& b2u = text::byte_to_codepoint();
  std::unordered_map<std::string, int32_t> tok_to_id;
  tok_to_id.reserve(n);
  m.token_bytes.resize(n);
  uint64_t h = detail::fnv1a64("gpt2", 4);
  for (size_t id = 0; id < n; ++id) {
    const std::string& u = unicode_tok[id];
    tok_to_id.emplace(u, static_cast<int32_t>(id));
    h = detail::fnv1a64(u.data(), u.size() + 1, h);  // includes the '\0' separator
    std::string raw;
    bool mapped = true;
    for (size_t i = 0; i < u.size() && mapped;) {
      const uint32_t cp = text::next_codepoint(u, i);
      const int byte = text::byte_of_codepoint(cp);
      if (byte >= 0) raw.push_back(static_cast<char>(byte));
      else mapped = false;
    }
    m.token_bytes[id] = mapped ? raw : u;  // an added token outside the byte alphabet: as-is
  }
  for (int b = 0; b < 256; ++b) {
    std::string u;
    text::append_utf8(u, b2u[b]);
    auto it = tok_to_id.find(u);
    RLHF_CHECK(it != tok_to_id.end(), "gpt2 tokenizer: '{}' lacks the single-byte token '{}' "
               "(byte {}); not a byte-level BPE vocabulary", vocab_path, u, b);
    m.byte_id[b] = it->second;
  }
  auto eot = tok_to_id.find("<|endoftext|>");
  RLHF_CHECK(eot != tok_to_id.end(), "gpt2 tokenizer: '{}' has no '<|endoftext|>' token",
             vocab_path);
  m.eot = eot->second;

  const int32_t merges = read_merges(merges_path, tok_to_id, m.merges, h);
  RLHF_CHECK(merges > 0, "gpt2 tokenizer: '{}' has no merges", merges_path);
  m.identity = "gpt2:" + detail::hex16(h);
  m.compile_regex();
  return tok;
}

std::vector<int32_t> Gpt2Tokenizer::encode(const std::string& text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  impl_->split(text, [&](size_t b, size_t len) { impl_->bpe(text.data() + b, len, ids); });
  return ids;
}

std::vector<std::string> Gpt2Tokenizer::pretokenize(const std::string& text) const {
  std::vector<std::string> chunks;
  impl_->split(text, [&](size_t b, size_t len) { chunks.emplace_back(text.substr(b, len)); });
  return chunks;
}

std::string Gpt2Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  const auto n = static_cast<int32_t>(impl_->token_bytes.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    RLHF_CHECK(id >= 0 && id < n, "gpt2 tokenizer: decode got id {} at position {}, expected "
               "0..{}", id, i, n - 1);
    if (id != impl_->eot) out += impl_->token_bytes[id];
  }
  return out;
}

int32_t Gpt2Tokenizer::vocab_size() const {
  return static_cast<int32_t>(impl_->token_bytes.size());
}
int32_t Gpt2Tokenizer::bos_id() const { return impl_->eot; }
int32_t Gpt2Tokenizer::eos_id() const { return impl_->eot; }
int32_t Gpt2Tokenizer::pad_id() const { return impl_->eot; }
std::string Gpt2Tokenizer::identity() const { return impl_->identity; }
std::string Gpt2Tokenizer::spec() const { return impl_->folder; }

}  // namespace rlhf
