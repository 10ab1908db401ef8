// jinja_lexer.h — template source -> tokens, with jinja2's lexing rules as Hugging Face
// transformers configures them (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline
// False): "\r\n" and "\r" become "\n" and one trailing newline of the source is dropped;
// `{{ }}`, `{% %}`, `{# #}`; `-` after an opening / before a closing delimiter strips all
// whitespace on that side; `+` keeps it (disables lstrip / trim); trim_blocks removes the first
// newline after a block or comment tag; lstrip_blocks removes spaces and tabs between the start
// of a line and a block or comment tag. Inside tags: names, strings ('...' / "..." with Python
// escapes), integers, floats and operators; a closing delimiter only counts when brackets are
// balanced (so `{{ {'a': 1} }}` works). Comments produce no tokens.
// Errors: rlhf::Error "template 'NAME' line L column C: ..." (unterminated tag / comment /
// string, an unexpected character or bracket).
#pragma once
#include <string>
#include <vector>

namespace rlhf::jinja {

enum class Tok { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };

struct Token {
  Tok type;
  std::string text;  // Text: the data; String: the decoded value; Name/Op/Int/Float: as written
  int line = 1, col = 1;
};

// The source after newline normalisation (what line/column numbers refer to).
std::string normalize_source(const std::string& source);

// Tokenizes `source` (not yet normalised); `name` only labels errors.
std::vector<Token> lex(const std::string& source, const std::string& name);

// "template 'NAME' line L column C: msg" — the format of every positioned template error.
std::string position_message(const std::string& name, int line, int col, const std::string& msg);

}  // namespace rlhf::jinja
