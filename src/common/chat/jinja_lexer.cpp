// jinja_lexer.cpp — see jinja_lexer.h.
#include "common/chat/jinja_lexer.h"

#include <cctype>
#include <cstring>

#include <fmt/format.h>

#include "common/core/check.h"

namespace rlhf::jinja {
namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// Appends the UTF-8 encoding of code point cp.
void put_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

class Lexer {
 public:
  Lexer(std::string src, const std::string& name) : src_(std::move(src)), name_(name) {}

  std::vector<Token> run() {
    bool line_starting = true;
    while (pos_ < src_.size()) {
      size_t p = pos_;
      for (;; ++p) {
        p = src_.find('{', p);
        if (p == std::string::npos || p + 1 >= src_.size()) { p = std::string::npos; break; }
        const char k = src_[p + 1];
        if (k == '{' || k == '%' || k == '#') break;
      }
      if (p == std::string::npos) {
        emit_text(src_.substr(pos_));
        pos_ = src_.size();
        break;
      }
      const char kind = src_[p + 1];
      const char sign = p + 2 < src_.size() && (src_[p + 2] == '-' || src_[p + 2] == '+') ? src_[p + 2] : 0;
      std::string text = src_.substr(pos_, p - pos_);
      if (sign == '-') {
        size_t e = text.size();
        while (e > 0 && is_ws(text[e - 1])) --e;
        text.resize(e);
      } else if (sign != '+' && kind != '{') {  // lstrip_blocks
        const size_t l = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if ((l > 0 || line_starting) && l < text.size()) {
          bool blank = true;
          for (size_t k = l; k < text.size(); ++k) blank = blank && is_ws(text[k]);
          if (blank) text.resize(l);
        }
      }
      emit_text(text);
      pos_ = p + 2 + (sign ? 1 : 0);
      advance_to(p);
      const int tag_line = line_, tag_col = col_;
      advance_to(pos_);
      if (kind == '#') line_starting = comment(tag_line, tag_col);
      else line_starting = tag(kind, tag_line, tag_col);
    }
    toks_.push_back({Tok::Eof, "", line_, col_});
    return std::move(toks_);
  }

 private:
  [[noreturn]] void fail(int line, int col, const std::string& msg) {
    throw Error(position_message(name_, line, col, msg));
  }

  // Moves the line/column counters to byte offset `to` (>= the counted offset).
  void advance_to(size_t to) {
    for (; counted_ < to; ++counted_) {
      if (src_[counted_] == '\n') { ++line_; col_ = 1; }
      else if ((static_cast<unsigned char>(src_[counted_]) & 0xc0) != 0x80) ++col_;
    }
  }

  void emit_text(const std::string& text) {
    if (!text.empty()) toks_.push_back({Tok::Text, text, line_, col_});
  }

  // After a closing delimiter at pos_ of length n: `-` strips whitespace, else trim_blocks.
  bool close(size_t n, char sign, bool trim) {
    pos_ += n;
    const size_t start = pos_;
    if (sign == '-') while (pos_ < src_.size() && is_ws(src_[pos_])) ++pos_;
    else if (trim && sign != '+' && pos_ < src_.size() && src_[pos_] == '\n') ++pos_;
    advance_to(pos_);
    return pos_ > start && src_[pos_ - 1] == '\n';
  }

  bool comment(int line, int col) {
    const size_t e = src_.find("#}", pos_);
    if (e == std::string::npos) fail(line, col, "missing end of comment tag '#}'");
    const char sign = e > pos_ && (src_[e - 1] == '-' || src_[e - 1] == '+') ? src_[e - 1] : 0;
    pos_ = e;
    advance_to(pos_);
    return close(2, sign, true);
  }

  bool tag(char kind, int line, int col) {
    toks_.push_back({kind == '{' ? Tok::VarBegin : Tok::BlockBegin, kind == '{' ? "{{" : "{%", line, col});
    const char close_ch = kind == '{' ? '}' : '%';
    std::vector<char> brackets;
    for (;;) {
      while (pos_ < src_.size() && is_ws(src_[pos_])) ++pos_;
      advance_to(pos_);
      if (pos_ >= src_.size())
        fail(line, col, kind == '{' ? "unexpected end of template, expected '}}'" : "unexpected end of template, expected '%}'");
      if (brackets.empty()) {
        const char c = src_[pos_];
        const char sign = (c == '-' || (c == '+' && kind == '%')) ? c : 0;
        const size_t at = pos_ + (sign ? 1 : 0);
        if (at + 1 < src_.size() && src_[at] == close_ch && src_[at + 1] == '}') {
          toks_.push_back({kind == '{' ? Tok::VarEnd : Tok::BlockEnd, "", line_, col_});
          pos_ = at;
          return close(2, sign, kind == '%');
        }
      }
      expr_token(brackets);
    }
  }

  void expr_token(std::vector<char>& brackets) {
    const char c = src_[pos_];
    const int line = line_, col = col_;
    const size_t start = pos_;
    if (std::isdigit(static_cast<unsigned char>(c))) {
      while (pos_ < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
      bool is_float = false;
      const bool after_dot = start > 0 && src_[start - 1] == '.';
      if (!after_dot && pos_ + 1 < src_.size() && src_[pos_] == '.' && std::isdigit(static_cast<unsigned char>(src_[pos_ + 1]))) {
        is_float = true;
        ++pos_;
        while (pos_ < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_]))) ++pos_;
      }
      if (!after_dot && pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
        size_t q = pos_ + 1;
        if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
        if (q < src_.size() && std::isdigit(static_cast<unsigned char>(src_[q]))) {
          is_float = true;
          pos_ = q;
          while (pos_ < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_]))) ++pos_;
        }
      }
      std::string t;
      for (size_t k = start; k < pos_; ++k) if (src_[k] != '_') t += src_[k];
      toks_.push_back({is_float ? Tok::Float : Tok::Int, t, line, col});
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      while (pos_ < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
      toks_.push_back({Tok::Name, src_.substr(start, pos_ - start), line, col});
    } else if (c == '\'' || c == '"') {
      toks_.push_back({Tok::String, string_literal(c, line, col), line, col});
    } else {
      static const char* ops[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~",
                                  "[", "]", "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"};
      const char* op = nullptr;
      for (const char* o : ops)
        if (src_.compare(pos_, std::strlen(o), o) == 0) { op = o; break; }
      if (!op) fail(line, col, fmt::format("unexpected character '{}'", c));
      const std::string o(op);
      if (o == "(" || o == "[" || o == "{") brackets.push_back(o == "(" ? ')' : o == "[" ? ']' : '}');
      if (o == ")" || o == "]" || o == "}") {
        if (brackets.empty()) fail(line, col, fmt::format("unexpected '{}'", o));
        if (brackets.back() != o[0]) fail(line, col, fmt::format("unexpected '{}', expected '{}'", o, brackets.back()));
        brackets.pop_back();
      }
      pos_ += o.size();
      toks_.push_back({Tok::Op, o, line, col});
    }
    advance_to(pos_);
  }

  std::string string_literal(char quote, int line, int col) {
    std::string out;
    size_t p = pos_ + 1;
    for (;; ++p) {
      if (p >= src_.size()) fail(line, col, "unterminated string literal");
      const char c = src_[p];
      if (c == quote) break;
      if (c != '\\') { out += c; continue; }
      if (++p >= src_.size()) fail(line, col, "unterminated string literal");
      const char e = src_[p];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case 'a': out += '\a'; break;
        case '0': out += '\0'; break;
        case '\\': case '\'': case '"': out += e; break;
        case '\n': break;
        case 'x': case 'u': case 'U': {
          const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (p + n >= src_.size()) fail(line, col, "truncated \\" + std::string(1, e) + " escape");
          const std::string hex = src_.substr(p + 1, n);
          if (hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
            fail(line, col, "\\" + std::string(1, e) + " escape needs " + std::to_string(n) +
                                " hex digits, got '" + hex + "'");
          const unsigned long cp = std::stoul(hex, nullptr, 16);
          if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            fail(line, col, "\\" + std::string(1, e) + hex + " is not a Unicode code point");
          put_utf8(out, static_cast<uint32_t>(cp));
          p += n;
          break;
        }
        default: out += '\\'; out += e;
      }
    }
    pos_ = p + 1;
    return out;
  }

  std::string src_;
  const std::string& name_;
  size_t pos_ = 0, counted_ = 0;
  int line_ = 1, col_ = 1;
  std::vector<Token> toks_;
};

}  // namespace

std::string normalize_source(const std::string& source) {
  std::string out;
  out.reserve(source.size());
  for (size_t k = 0; k < source.size(); ++k) {
    if (source[k] == '\r') {
      out += '\n';
      if (k + 1 < source.size() && source[k + 1] == '\n') ++k;
    } else {
      out += source[k];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();  // keep_trailing_newline=False
  return out;
}

std::vector<Token> lex(const std::string& source, const std::string& name) {
  return Lexer(normalize_source(source), name).run();
}

std::string position_message(const std::string& name, int line, int col, const std::string& msg) {
  return fmt::format("template '{}' line {} column {}: {}", name, line, col, msg);
}

}  // namespace rlhf::jinja
