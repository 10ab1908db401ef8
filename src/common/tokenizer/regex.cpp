// regex.cpp — see regex.h.
#include "common/tokenizer/regex.h"

#include <memory>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fmt/format.h>

#include "common/core/check.h"

namespace rlhf {

const char* const kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

namespace {

constexpr const char* kWhiteSpace =
    "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";

struct MatchDataDeleter {
  void operator()(pcre2_match_data* md) const { pcre2_match_data_free(md); }
};

std::string pcre2_message(int code) {
  PCRE2_UCHAR msg[256];
  pcre2_get_error_message(code, msg, sizeof(msg));
  return reinterpret_cast<const char*>(msg);
}

}  // namespace

std::string white_space_regex(const std::string& p, const std::string& what) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[++i];
      if (e == 's') {
        out += in_class ? kWhiteSpace : fmt::format("[{}]", kWhiteSpace);
      } else if (e == 'S') {
        RLHF_CHECK(!in_class, "{}: regex '{}': \\S inside a character class is not supported",
                   what, p);
        out += fmt::format("[^{}]", kWhiteSpace);
      } else {
        out.push_back(c);
        out.push_back(e);
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out.push_back(c);
      if (i + 1 < p.size() && p[i + 1] == '^') out.push_back(p[++i]);
      if (i + 1 < p.size() && p[i + 1] == ']') out.push_back(p[++i]);  // literal ']' first
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out.push_back(c);
  }
  return out;
}

Regex::Regex(const std::string& pattern, const std::string& what) : what_(what) {
  const std::string p = white_space_regex(pattern, what);
  int err = 0;
  PCRE2_SIZE err_off = 0;
  re_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(),
                      PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr);
  RLHF_CHECK(re_ != nullptr, "{}: PCRE2 cannot compile the regex '{}' at offset {}: {}", what,
             pattern, err_off, pcre2_message(err));
  pcre2_jit_compile(re_, PCRE2_JIT_COMPLETE);  // optional: pcre2_match falls back without JIT
}

Regex::~Regex() {
  if (re_ != nullptr) pcre2_code_free(re_);
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(const std::string& text) const {
  std::vector<std::pair<size_t, size_t>> out;
  std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(
      pcre2_match_data_create_from_pattern(re_, nullptr));
  RLHF_CHECK(md != nullptr, "{}: out of memory creating PCRE2 match data", what_);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t off = 0;
  while (off <= text.size()) {
    const int rc = pcre2_match(re_, subject, text.size(), off, 0, md.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    RLHF_CHECK(rc >= 0, "{}: PCRE2 match failed at byte {} of a {}-byte text: {}", what_, off,
               text.size(), pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    if (ov[1] > ov[0]) {
      out.emplace_back(ov[0], ov[1]);
      off = ov[1];
    } else {  // empty match: step over one character
      off = ov[0] + 1;
      while (off < text.size() && (static_cast<unsigned char>(text[off]) & 0xC0) == 0x80) ++off;
    }
  }
  return out;
}

}  // namespace rlhf
