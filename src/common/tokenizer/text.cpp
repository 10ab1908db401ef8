// text.cpp — see text.h. Normalisation and categories come from utf8proc (libutf8proc-dev).
#include "common/tokenizer/text.h"

#include <cstdlib>
#include <memory>

#include <utf8proc.h>

namespace rlhf::text {

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

size_t utf8_len(unsigned char c) {
  return c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
}

uint32_t next_codepoint(const std::string& s, size_t& i) {
  utf8proc_int32_t cp = -1;
  const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                  static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
  if (n <= 0 || cp < 0) {
    ++i;
    return kInvalid;
  }
  i += static_cast<size_t>(n);
  return static_cast<uint32_t>(cp);
}

const std::array<uint32_t, 256>& byte_to_codepoint() {
  static const std::array<uint32_t, 256> m = [] {
    std::array<uint32_t, 256> r{};
    uint32_t n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool direct = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      r[b] = direct ? static_cast<uint32_t>(b) : 256 + n++;
    }
    return r;
  }();
  return m;
}

const std::array<std::string, 256>& byte_level_chars() {
  static const std::array<std::string, 256> m = [] {
    std::array<std::string, 256> r;
    for (int b = 0; b < 256; ++b) append_utf8(r[b], byte_to_codepoint()[b]);
    return r;
  }();
  return m;
}

int byte_of_codepoint(uint32_t cp) {
  static const std::array<int, 512> inv = [] {
    std::array<int, 512> r;
    r.fill(-1);
    for (int b = 0; b < 256; ++b) r[byte_to_codepoint()[b]] = b;
    return r;
  }();
  return cp < inv.size() ? inv[cp] : -1;
}

namespace {

// Applies f to each maximal valid UTF-8 run of s; invalid bytes are copied unchanged.
template <class F>
std::string map_valid_runs(const std::string& s, F&& f) {
  std::string out;
  out.reserve(s.size());
  size_t run = 0, i = 0;
  while (i < s.size()) {
    const size_t at = i;
    if (next_codepoint(s, i) == kInvalid) {
      if (at > run) out += f(s.substr(run, at - run));
      out.push_back(s[at]);
      run = i;
    }
  }
  if (s.size() > run) out += f(s.substr(run));
  return out;
}

std::string utf8proc_apply(const std::string& s, int options) {
  utf8proc_uint8_t* dst = nullptr;
  const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                              static_cast<utf8proc_ssize_t>(s.size()), &dst,
                              static_cast<utf8proc_option_t>(options));
  if (n < 0) return s;  // cannot happen on a valid run; keep the bytes rather than lose them
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> own(dst, &std::free);
  return std::string(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
}

}  // namespace

std::string normalize(const std::string& s, NormalForm form) {
  int opt = UTF8PROC_STABLE;
  switch (form) {
    case NormalForm::NFC: opt |= UTF8PROC_COMPOSE; break;
    case NormalForm::NFD: opt |= UTF8PROC_DECOMPOSE; break;
    case NormalForm::NFKC: opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case NormalForm::NFKD: opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  bool ascii = true;
  for (unsigned char c : s) ascii = ascii && c < 0x80;
  if (ascii) return s;  // every normal form leaves ASCII as it is
  return map_valid_runs(s, [&](const std::string& run) { return utf8proc_apply(run, opt); });
}

// Rust's str::to_lowercase (what huggingface uses): the simple mappings plus the two
// unconditional special cases, U+0130 -> "i\u0307" and a final capital sigma -> U+03C2.
std::string lowercase(const std::string& s) {
  return map_valid_runs(s, [](const std::string& run) {
    std::string out;
    out.reserve(run.size());
    uint32_t prev = 0;
    for (size_t i = 0; i < run.size();) {
      const uint32_t cp = next_codepoint(run, i);
      if (cp == 0x130) {
        out += "i\xcc\x87";
      } else if (cp == 0x3A3) {
        size_t k = i;
        const uint32_t next = k < run.size() ? next_codepoint(run, k) : 0;
        auto letter = [](uint32_t c) { return is_alphanumeric(c) && !is_numeric(c); };
        append_utf8(out, letter(prev) && !letter(next) ? 0x3C2 : 0x3C3);
      } else {
        append_utf8(out, static_cast<uint32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
      }
      prev = cp;
    }
    return out;
  });
}

bool is_whitespace(uint32_t cp) {
  switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0:
    case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

namespace {
utf8proc_category_t category(uint32_t cp) {
  return cp > 0x10FFFF ? UTF8PROC_CATEGORY_CN
                       : utf8proc_category(static_cast<utf8proc_int32_t>(cp));
}
}  // namespace

bool is_numeric(uint32_t cp) {
  const auto c = category(cp);
  return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

bool is_alphanumeric(uint32_t cp) {
  const auto c = category(cp);
  return is_numeric(cp) || c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL ||
         c == UTF8PROC_CATEGORY_LT || c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_LO;
}

bool is_punctuation(uint32_t cp) {
  const auto c = category(cp);
  return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

}  // namespace rlhf::text
