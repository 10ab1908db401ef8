// regex.h — the tokenizers' regular expressions, through PCRE2 (UTF + UCP, JIT when available).
// Patterns are written for Python's `regex` (GPT-2) or Oniguruma (Hugging Face tokenizers), whose
// \s is Unicode White_Space; PCRE2's UCP \s differs (no U+0085, adds U+180E), so the constructor
// rewrites \s and \S into that explicit set. Invalid UTF-8 in the subject is allowed
// (PCRE2_MATCH_INVALID_UTF): matches never cover an invalid byte.
// Thread-safety: a Regex is immutable after construction; find_all() may run concurrently.
#pragma once
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

struct pcre2_real_code_8;

namespace rlhf {

// GPT-2's pre-tokenizer pattern (the gpt2 kind, and tokenizer.json's ByteLevel use_regex).
extern const char* const kGpt2Pattern;

class Regex {
 public:
  // `what` names the pattern's origin in errors (e.g. "tokenizer.json: pre_tokenizer.pattern").
  // Throws rlhf::Error with PCRE2's message and the offset when the pattern does not compile.
  Regex(const std::string& pattern, const std::string& what);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Non-overlapping matches [begin, end) left to right; empty matches are skipped.
  std::vector<std::pair<size_t, size_t>> find_all(const std::string& text) const;

 private:
  pcre2_real_code_8* re_ = nullptr;
  std::string what_;
};

// \s / \S rewritten to the White_Space set (inside and outside character classes). Exposed for
// tests. Throws rlhf::Error for \S inside a character class (no PCRE2 spelling of its negation).
std::string white_space_regex(const std::string& pattern, const std::string& what);

}  // namespace rlhf
