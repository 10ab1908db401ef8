// llama2c.cpp — llama2.c's tokenizer.bin: encode/decode with run.c's exact rules
// (dummy-prefix space, codepoint lookup with <0xNN> byte fallback at id byte + 3, greedy merge of
// the adjacent pair whose concatenated piece scores highest, leftmost on ties). Contract:
// tokenizer.h.
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include <fmt/format.h>

#include "common/core/check.h"
#include "common/tokenizer/tokenizer.h"

namespace rlhf {

struct Llama2cTokenizer::Impl {
  std::string path;
  int32_t max_token_length = 0;
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::unordered_map<std::string, int32_t> lookup;  // piece -> first id with that piece
  std::string identity;
  int32_t space_id = -1;

  int32_t find(const std::string& s) const {
    auto it = lookup.find(s);
    return it == lookup.end() ? -1 : it->second;
  }
};

Llama2cTokenizer::Llama2cTokenizer() : impl_(std::make_unique<Impl>()) {}
Llama2cTokenizer::~Llama2cTokenizer() = default;

std::unique_ptr<Llama2cTokenizer> Llama2cTokenizer::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  RLHF_CHECK(f.good(), "llama2c tokenizer: cannot open '{}'", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  const std::string data = ss.str();
  std::unique_ptr<Llama2cTokenizer> tok(new Llama2cTokenizer());
  Impl& m = *tok->impl_;
  m.path = path;

  RLHF_CHECK(data.size() >= 4, "llama2c tokenizer '{}': truncated header ({} bytes, need 4 for "
             "max_token_length)", path, data.size());
  std::memcpy(&m.max_token_length, data.data(), 4);
  RLHF_CHECK(m.max_token_length > 0 && m.max_token_length < (1 << 20),
             "llama2c tokenizer '{}': max_token_length {} is implausible; not a tokenizer.bin?",
             path, m.max_token_length);
  size_t off = 4;
  uint64_t h = detail::fnv1a64("llama2c", 7);
  while (off < data.size()) {
    const size_t id = m.pieces.size();
    RLHF_CHECK(data.size() - off >= 8, "llama2c tokenizer '{}': truncated at token {} (byte {}: "
               "need 8 bytes for score + length, {} left)", path, id, off, data.size() - off);
    float score = 0.f;
    int32_t len = 0;
    std::memcpy(&score, data.data() + off, 4);
    std::memcpy(&len, data.data() + off + 4, 4);
    off += 8;
    RLHF_CHECK(len >= 0 && len <= m.max_token_length,
               "llama2c tokenizer '{}': token {} has length {}, expected 0..{} "
               "(max_token_length); corrupt or not a tokenizer.bin?",
               path, id, len, m.max_token_length);
    RLHF_CHECK(data.size() - off >= static_cast<size_t>(len),
               "llama2c tokenizer '{}': truncated at token {} (byte {}: piece needs {} bytes, "
               "{} left)", path, id, off, len, data.size() - off);
    m.pieces.emplace_back(data.data() + off, static_cast<size_t>(len));
    m.scores.push_back(score);
    off += len;
    m.lookup.emplace(m.pieces.back(), static_cast<int32_t>(id));  // keeps the first duplicate
    h = detail::fnv1a64(&score, 4, h);
    h = detail::fnv1a64(&len, 4, h);
    h = detail::fnv1a64(m.pieces.back().data(), m.pieces.back().size(), h);
  }
  const size_t n = m.pieces.size();
  RLHF_CHECK(n >= 259, "llama2c tokenizer '{}': {} tokens, expected at least 259 (3 specials + "
             "256 <0xNN> byte tokens)", path, n);
  for (int b = 0; b < 256; ++b) {
    const std::string want = fmt::format("<0x{:02X}>", b);
    RLHF_CHECK(m.pieces[3 + b] == want, "llama2c tokenizer '{}': token {} is '{}', expected "
               "byte-fallback piece '{}'", path, 3 + b, m.pieces[3 + b], want);
  }
  m.space_id = m.find(" ");
  RLHF_CHECK(m.space_id >= 0, "llama2c tokenizer '{}': no ' ' piece (needed as the dummy "
             "prefix)", path);
  m.identity = "llama2c:" + detail::hex16(h);
  return tok;
}

std::vector<int32_t> Llama2cTokenizer::encode(const std::string& text) const {
  const Impl& m = *impl_;
  std::vector<int32_t> tokens;
  if (text.empty()) return tokens;
  tokens.reserve(text.size() + 1);
  tokens.push_back(m.space_id);  // dummy prefix, as sentencepiece's add_dummy_prefix

  // Codepoints (run.c groups a lead byte with up to 3 continuation bytes); unknown -> bytes.
  std::string buf;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if ((c & 0xC0) != 0x80) buf.clear();
    buf.push_back(static_cast<char>(c));
    const bool next_cont =
        i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80;
    if (next_cont && buf.size() < 4) continue;
    const int32_t id = m.find(buf);
    if (id >= 0) {
      tokens.push_back(id);
    } else {
      for (unsigned char b : buf) tokens.push_back(static_cast<int32_t>(b) + 3);
    }
    buf.clear();
  }

  // Greedy merges. pair_id[i]/pair_score[i] describe (tokens[i], tokens[i+1]).
  std::vector<int32_t> pair_id;
  std::vector<float> pair_score;
  auto eval = [&](size_t i, int32_t& id, float& score) {
    id = m.find(m.pieces[tokens[i]] + m.pieces[tokens[i + 1]]);
    score = id >= 0 ? m.scores[id] : 0.f;
  };
  pair_id.resize(tokens.size() - 1);
  pair_score.resize(tokens.size() - 1);
  for (size_t i = 0; i + 1 < tokens.size(); ++i) eval(i, pair_id[i], pair_score[i]);
  while (!pair_id.empty()) {
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < pair_id.size(); ++i)
      if (pair_id[i] >= 0 && (best == SIZE_MAX || pair_score[i] > pair_score[best])) best = i;
    if (best == SIZE_MAX) break;
    tokens[best] = pair_id[best];
    tokens.erase(tokens.begin() + best + 1);
    pair_id.erase(pair_id.begin() + best);
    pair_score.erase(pair_score.begin() + best);
    if (best > 0) eval(best - 1, pair_id[best - 1], pair_score[best - 1]);
    if (best < pair_id.size()) eval(best, pair_id[best], pair_score[best]);
  }
  return tokens;
}

std::string Llama2cTokenizer::decode_piece(int32_t prev, int32_t tok) const {
  const Impl& m = *impl_;
  RLHF_CHECK(tok >= 0 && tok < vocab_size(), "llama2c tokenizer: id {} out of range 0..{}", tok,
             vocab_size() - 1);
  if (tok == bos_id() || tok == eos_id() || tok == pad_id()) return {};
  if (tok >= 3 && tok < 259) return std::string(1, static_cast<char>(tok - 3));  // <0xNN>
  const std::string& p = m.pieces[tok];
  if (prev == bos_id() && !p.empty() && p[0] == ' ') return p.substr(1);
  return p;
}

std::string Llama2cTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  int32_t prev = -1;
  for (size_t i = 0; i < ids.size(); ++i) {
    RLHF_CHECK(ids[i] >= 0 && ids[i] < vocab_size(), "llama2c tokenizer: decode got id {} at "
               "position {}, expected 0..{}", ids[i], i, vocab_size() - 1);
    out += decode_piece(prev, ids[i]);
    prev = ids[i];
  }
  return out;
}

const std::string& Llama2cTokenizer::piece(int32_t id) const {
  RLHF_CHECK(id >= 0 && id < vocab_size(), "llama2c tokenizer: id {} out of range 0..{}", id,
             vocab_size() - 1);
  return impl_->pieces[id];
}

float Llama2cTokenizer::score(int32_t id) const {
  RLHF_CHECK(id >= 0 && id < vocab_size(), "llama2c tokenizer: id {} out of range 0..{}", id,
             vocab_size() - 1);
  return impl_->scores[id];
}

int32_t Llama2cTokenizer::vocab_size() const {
  return static_cast<int32_t>(impl_->pieces.size());
}
std::string Llama2cTokenizer::identity() const { return impl_->identity; }
std::string Llama2cTokenizer::spec() const { return impl_->path; }

}  // namespace rlhf
