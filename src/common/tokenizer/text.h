// text.h — UTF-8 and Unicode helpers shared by the tokenizers (one home): codepoint decode and
// encode, the GPT-2 byte-level alphabet, Unicode normalisation (utf8proc) and the character
// classes Hugging Face tokenizers test (Rust's char::is_whitespace / is_numeric / is_alphanumeric).
// Invalid UTF-8 never throws: next_codepoint() reports it and normalize() leaves such bytes as
// they are (only the valid runs around them are normalised).
#pragma once
#include <array>
#include <cstdint>
#include <string>

namespace rlhf::text {

void append_utf8(std::string& s, uint32_t cp);
// Decodes the codepoint at s[i] and advances i past it. An invalid or truncated sequence yields
// kInvalid and advances i by one byte.
inline constexpr uint32_t kInvalid = 0xFFFFFFFFu;
uint32_t next_codepoint(const std::string& s, size_t& i);
size_t utf8_len(unsigned char lead);  // 1..4 from the lead byte (1 for a stray continuation)

// GPT-2's bytes_to_unicode(): printable bytes map to themselves, the others to 256 + n.
const std::array<uint32_t, 256>& byte_to_codepoint();
// byte -> its byte-level character as UTF-8 (1 or 2 bytes).
const std::array<std::string, 256>& byte_level_chars();
// Inverse: codepoint -> byte, or -1 when the codepoint is not in the byte-level alphabet.
int byte_of_codepoint(uint32_t cp);

enum class NormalForm { NFC, NFD, NFKC, NFKD };
std::string normalize(const std::string& s, NormalForm form);
std::string lowercase(const std::string& s);

bool is_whitespace(uint32_t cp);    // Unicode White_Space (Rust char::is_whitespace)
bool is_numeric(uint32_t cp);       // general category Nd, Nl, No (Rust char::is_numeric)
bool is_alphanumeric(uint32_t cp);  // L* or N* (Rust char::is_alphanumeric)
bool is_punctuation(uint32_t cp);   // general category P*

}  // namespace rlhf::text
