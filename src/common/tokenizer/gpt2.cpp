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

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/core/check.h"
#include "common/tokenizer/tokenizer.h"

namespace rlhf {
namespace {

// The reference pattern is 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// under Python's `regex`, whose \s is Unicode White_Space. PCRE2's UCP \s differs (it excludes
// U+0085 and includes U+180E), so \s is spelled out as the White_Space set.
#define RLHF_WS "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
constexpr const char* kPattern = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" RLHF_WS
                                 "\\p{L}\\p{N}]+|[" RLHF_WS "]+(?![^" RLHF_WS "])|[" RLHF_WS "]+";
#undef RLHF_WS
constexpr size_t kMaxCachedWord = 256;      // longer chunks are not cached
constexpr size_t kMaxCacheEntries = 1 << 17;  // cleared when exceeded

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  RLHF_CHECK(f.good(), "cannot open '{}'", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// encoder.py's bytes_to_unicode(): printable bytes map to themselves, the rest to 256 + n.
std::array<uint32_t, 256> bytes_to_unicode() {
  std::array<uint32_t, 256> m{};
  std::array<bool, 256> direct{};
  for (int b = 0; b < 256; ++b)
    direct[b] = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  uint32_t n = 0;
  for (int b = 0; b < 256; ++b) m[b] = direct[b] ? static_cast<uint32_t>(b) : 256 + n++;
  return m;
}

void append_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    s.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    s.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Decodes one codepoint of a valid UTF-8 string (nlohmann validates JSON strings) at i.
uint32_t next_codepoint(const std::string& s, size_t& i) {
  const auto c = static_cast<unsigned char>(s[i]);
  int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : 4;
  uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
  for (int k = 1; k < len && i + k < s.size(); ++k)
    cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += len;
  return cp;
}

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct MatchDataDeleter {
  void operator()(pcre2_match_data* md) const { pcre2_match_data_free(md); }
};

}  // namespace

struct Gpt2Tokenizer::Impl {
  std::string folder;
  std::vector<std::string> token_bytes;  // id -> raw bytes (through the byte decoder)
  std::array<int32_t, 256> byte_id{};    // byte -> id of its single-byte token
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a, b) -> (rank, merged)
  int32_t eot = -1;
  std::string identity;
  pcre2_code* re = nullptr;
  mutable std::mutex mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  ~Impl() {
    if (re != nullptr) pcre2_code_free(re);
  }

  void compile_regex() {
    int err = 0;
    PCRE2_SIZE err_off = 0;
    re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED,
                       PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr);
    if (re == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      throw Error(fmt::format("gpt2 tokenizer: PCRE2 cannot compile the pre-tokenizer regex at "
                              "offset {}: {}",
                              err_off, reinterpret_cast<const char*>(msg)));
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // optional: pcre2_match falls back without JIT
  }

  // Calls emit(begin, length) for each pre-token chunk, in order, covering all of text.
  template <typename F>
  void split(const std::string& text, F&& emit) const {
    std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(
        pcre2_match_data_create_from_pattern(re, nullptr));
    RLHF_CHECK(md != nullptr, "gpt2 tokenizer: out of memory creating PCRE2 match data");
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    const size_t n = text.size();
    size_t off = 0;
    while (off < n) {
      const int rc = pcre2_match(re, subject, n, off, 0, md.get(), nullptr);
      size_t mb = n, me = n;
      if (rc >= 0) {
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
        mb = ov[0];
        me = ov[1];
      } else if (rc != PCRE2_ERROR_NOMATCH) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof(msg));
        throw Error(fmt::format("gpt2 tokenizer: PCRE2 match failed at byte {} of a {}-byte "
                                "text: {}",
                                off, n, reinterpret_cast<const char*>(msg)));
      }
      for (; off < mb; ++off) emit(off, size_t{1});  // bytes that are not valid UTF-8
      if (rc < 0) break;
      RLHF_CHECK(me > mb, "gpt2 tokenizer: empty regex match at byte {}", mb);
      emit(mb, me - mb);
      off = me;
    }
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
    vocab = nlohmann::json::parse(read_all(vocab_path));
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
  const auto b2u = bytes_to_unicode();
  std::array<int32_t, 512> u2b;
  u2b.fill(-1);
  for (int b = 0; b < 256; ++b) u2b[b2u[b]] = b;
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
      const uint32_t cp = next_codepoint(u, i);
      if (cp < u2b.size() && u2b[cp] >= 0) raw.push_back(static_cast<char>(u2b[cp]));
      else mapped = false;
    }
    m.token_bytes[id] = mapped ? raw : u;  // an added token outside the byte alphabet: as-is
  }
  for (int b = 0; b < 256; ++b) {
    std::string u;
    append_utf8(u, b2u[b]);
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
