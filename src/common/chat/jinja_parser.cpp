// jinja_parser.cpp — see jinja_parser.h. A recursive-descent parser, one function per level.
#include "common/chat/jinja_parser.h"

#include <fmt/format.h>

#include "common/core/check.h"

namespace rlhf::jinja {
namespace {

using K = Node::K;

class Parser {
 public:
  Parser(const std::vector<Token>& toks, const std::string& name) : t_(toks), name_(name) {}

  Body parse_template() {
    std::string end;
    Body body = parse_body({}, end);
    return body;
  }

 private:
  const Token& cur() const { return t_[p_]; }
  const Token& next() { return t_[p_++]; }
  bool is_op(const char* op) const { return cur().type == Tok::Op && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == Tok::Name && cur().text == n; }
  bool accept_op(const char* op) { if (is_op(op)) { ++p_; return true; } return false; }
  bool accept_name(const char* n) { if (is_name(n)) { ++p_; return true; } return false; }

  [[noreturn]] void fail(const Token& at, const std::string& msg) const {
    throw Error(position_message(name_, at.line, at.col, msg));
  }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case Tok::Eof: return "end of template";
      case Tok::BlockEnd: return "end of statement block";
      case Tok::VarEnd: return "end of print statement";
      case Tok::Text: return "template text";
      case Tok::String: return "string literal";
      default: return "'" + t.text + "'";
    }
  }
  void expect_op(const char* op) {
    if (!accept_op(op)) fail(cur(), fmt::format("expected '{}', got {}", op, describe(cur())));
  }
  std::string expect_name() {
    if (cur().type != Tok::Name) fail(cur(), fmt::format("expected a name, got {}", describe(cur())));
    return next().text;
  }
  void expect_block_end() {
    if (cur().type != Tok::BlockEnd) fail(cur(), fmt::format("expected end of statement block, got {}", describe(cur())));
    ++p_;
  }
  NodePtr make(K k, const Token& at) { return std::make_shared<Node>(k, at.line, at.col); }

  // Statements until `{% <one of ends> %}`; the end keyword is left in `end` (its block end is
  // consumed unless it is elif, which carries an expression).
  Body parse_body(const std::vector<std::string>& ends, std::string& end) {
    Body body;
    for (;;) {
      const Token& tk = cur();
      if (tk.type == Tok::Eof) {
        if (!ends.empty()) fail(tk, fmt::format("unexpected end of template, expected '{}'", ends.front()));
        return body;
      }
      if (tk.type == Tok::Text) {
        auto n = make(K::Text, tk);
        n->name = next().text;
        body.push_back(n);
      } else if (tk.type == Tok::VarBegin) {
        ++p_;
        auto n = make(K::Output, tk);
        n->kids.push_back(parse_expr());
        if (cur().type != Tok::VarEnd) fail(cur(), fmt::format("expected end of print statement, got {}", describe(cur())));
        ++p_;
        body.push_back(n);
      } else {
        ++p_;
        const Token& kw = cur();
        if (kw.type != Tok::Name) fail(kw, fmt::format("expected a statement name, got {}", describe(kw)));
        for (const auto& e : ends)
          if (kw.text == e) {
            ++p_;
            end = e;
            if (e != "elif") expect_block_end();
            return body;
          }
        body.push_back(statement());
      }
    }
  }

  NodePtr statement() {
    const Token& kw = next();
    const std::string& s = kw.text;
    if (s == "if") return if_stmt(kw);
    if (s == "for") return for_stmt(kw);
    if (s == "set") return set_stmt(kw);
    if (s == "macro") return macro_stmt(kw);
    if (s == "call") return call_stmt(kw);
    if (s == "break" || s == "continue" || s == "generation") {
      auto n = make(s == "break" ? K::Break : s == "continue" ? K::Continue : K::Generation, kw);
      expect_block_end();
      if (n->k == K::Generation) {
        std::string end;
        n->body = parse_body({"endgeneration"}, end);
      }
      return n;
    }
    if (s.rfind("end", 0) == 0 || s == "elif" || s == "else")
      fail(kw, fmt::format("unexpected '{}'", s));
    fail(kw, fmt::format("unsupported tag '{}'", s));
  }

  NodePtr if_stmt(const Token& kw) {
    auto n = make(K::If, kw);
    std::string end = "elif";
    while (end == "elif") {
      NodePtr cond = parse_expr();
      expect_block_end();
      Body b = parse_body({"elif", "else", "endif"}, end);
      n->branches.emplace_back(cond, std::move(b));
    }
    if (end == "else") n->else_body = parse_body({"endif"}, end);
    return n;
  }

  NodePtr for_stmt(const Token& kw) {
    auto n = make(K::For, kw);
    const bool paren = accept_op("(");
    do n->targets.push_back(expect_name()); while (accept_op(","));
    if (paren) expect_op(")");
    if (!accept_name("in")) fail(cur(), fmt::format("expected 'in', got {}", describe(cur())));
    n->kids.push_back(parse_or());
    n->kids.push_back(accept_name("if") ? parse_expr() : nullptr);
    if (is_name("recursive")) fail(cur(), "unsupported: recursive for loops");
    expect_block_end();
    std::string end;
    n->body = parse_body({"else", "endfor"}, end);
    if (end == "else") n->else_body = parse_body({"endfor"}, end);
    return n;
  }

  NodePtr set_stmt(const Token& kw) {
    const std::string target = expect_name();
    if (cur().type == Tok::BlockEnd) {
      ++p_;
      auto n = make(K::SetBlock, kw);
      n->targets.push_back(target);
      std::string end;
      n->body = parse_body({"endset"}, end);
      return n;
    }
    auto n = make(K::Set, kw);
    n->targets.push_back(target);
    if (accept_op(".")) n->name = expect_name();
    if (is_op(",")) fail(cur(), "unsupported: tuple assignment in set");
    expect_op("=");
    n->kids.push_back(parse_expr());
    expect_block_end();
    return n;
  }

  // (a, b=default, ...) into targets / kids.
  void params(NodePtr& n) {
    expect_op("(");
    while (!accept_op(")")) {
      if (!n->targets.empty()) expect_op(",");
      if (is_op(")")) { ++p_; break; }
      n->targets.push_back(expect_name());
      n->kids.push_back(accept_op("=") ? parse_expr() : nullptr);
    }
  }

  NodePtr macro_stmt(const Token& kw) {
    auto n = make(K::Macro, kw);
    n->name = expect_name();
    params(n);
    expect_block_end();
    std::string end;
    n->body = parse_body({"endmacro"}, end);
    return n;
  }

  NodePtr call_stmt(const Token& kw) {
    auto n = make(K::CallBlock, kw);
    auto sig = make(K::Macro, kw);
    if (is_op("(")) params(sig);
    n->targets = sig->targets;
    NodePtr call = parse_expr();
    if (call->k != K::Call) fail(kw, "expected a call after 'call'");
    n->kids.push_back(call);
    for (auto& d : sig->kids) n->kids.push_back(d);  // kids[1..]: caller parameter defaults
    expect_block_end();
    std::string end;
    n->body = parse_body({"endcall"}, end);
    return n;
  }

  // ---- expressions ------------------------------------------------------------------------
  NodePtr parse_expr() {
    NodePtr a = parse_or();
    while (is_name("if")) {
      const Token& at = next();
      auto n = make(K::Cond, at);
      n->kids.push_back(a);
      n->kids.push_back(parse_or());
      n->kids.push_back(accept_name("else") ? parse_expr() : nullptr);
      a = n;
    }
    return a;
  }

  NodePtr binary(const Token& at, const std::string& op, NodePtr a, NodePtr b) {
    auto n = make(K::Binary, at);
    n->name = op;
    n->kids = {std::move(a), std::move(b)};
    return n;
  }

  NodePtr parse_or() {
    NodePtr a = parse_and();
    while (is_name("or")) { const Token& at = next(); a = binary(at, "or", a, parse_and()); }
    return a;
  }
  NodePtr parse_and() {
    NodePtr a = parse_not();
    while (is_name("and")) { const Token& at = next(); a = binary(at, "and", a, parse_not()); }
    return a;
  }
  NodePtr parse_not() {
    if (is_name("not")) {
      auto n = make(K::Unary, next());
      n->name = "not";
      n->kids.push_back(parse_not());
      return n;
    }
    return parse_compare();
  }
  NodePtr parse_compare() {
    NodePtr a = parse_math1();
    for (;;) {
      const Token& at = cur();
      if (at.type == Tok::Op && (at.text == "==" || at.text == "!=" || at.text == "<" ||
                                 at.text == ">" || at.text == "<=" || at.text == ">=")) {
        ++p_;
        a = binary(at, at.text, a, parse_math1());
      } else if (is_name("in")) {
        ++p_;
        a = binary(at, "in", a, parse_math1());
      } else if (is_name("not") && t_[p_ + 1].type == Tok::Name && t_[p_ + 1].text == "in") {
        p_ += 2;
        a = binary(at, "not in", a, parse_math1());
      } else {
        return a;
      }
    }
  }
  NodePtr parse_math1() {
    NodePtr a = parse_concat();
    while (is_op("+") || is_op("-")) { const Token& at = next(); a = binary(at, at.text, a, parse_concat()); }
    return a;
  }
  NodePtr parse_concat() {
    NodePtr a = parse_math2();
    while (is_op("~")) { const Token& at = next(); a = binary(at, "~", a, parse_math2()); }
    return a;
  }
  NodePtr parse_math2() {
    NodePtr a = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& at = next();
      a = binary(at, at.text, a, parse_pow());
    }
    return a;
  }
  NodePtr parse_pow() {
    NodePtr a = parse_unary(true);
    while (is_op("**")) { const Token& at = next(); a = binary(at, "**", a, parse_unary(true)); }
    return a;
  }
  NodePtr parse_unary(bool with_filter) {
    NodePtr n;
    if (is_op("-") || is_op("+")) {
      n = make(K::Unary, cur());
      n->name = next().text;
      n->kids.push_back(parse_unary(false));
    } else {
      n = parse_primary();
    }
    n = parse_postfix(n);
    return with_filter ? parse_filters(n) : n;
  }

  NodePtr parse_primary();
  NodePtr parse_postfix(NodePtr n);
  NodePtr parse_filters(NodePtr n);
  NodePtr parse_subscript(NodePtr obj, const Token& at);
  void call_args(NodePtr& n);

  const std::vector<Token>& t_;
  const std::string& name_;
  size_t p_ = 0;
};

NodePtr Parser::parse_primary() {
  const Token& tk = cur();
  if (tk.type == Tok::Name) {
    ++p_;
    auto lit = make(K::Literal, tk);
    const std::string& s = tk.text;
    if (s == "true" || s == "True") { lit->value = Value::boolean(true); return lit; }
    if (s == "false" || s == "False") { lit->value = Value::boolean(false); return lit; }
    if (s == "none" || s == "None") { lit->value = Value::none(); return lit; }
    auto n = make(K::Name, tk);
    n->name = s;
    return n;
  }
  if (tk.type == Tok::String) {
    std::string s;
    while (cur().type == Tok::String) s += next().text;
    auto lit = make(K::Literal, tk);
    lit->value = Value::str(s);
    return lit;
  }
  if (tk.type == Tok::Int || tk.type == Tok::Float) {
    ++p_;
    auto lit = make(K::Literal, tk);
    try {
      lit->value = tk.type == Tok::Int ? Value::integer(std::stoll(tk.text)) : Value::real(std::stod(tk.text));
    } catch (const std::exception&) {
      fail(tk, "number out of range: " + tk.text);
    }
    return lit;
  }
  if (accept_op("(")) {
    if (accept_op(")")) return make(K::ListLit, tk);  // ()
    NodePtr e = parse_expr();
    if (!is_op(",")) { expect_op(")"); return e; }
    auto n = make(K::ListLit, tk);
    n->kids.push_back(e);
    while (accept_op(",") && !is_op(")")) n->kids.push_back(parse_expr());
    expect_op(")");
    return n;
  }
  if (accept_op("[")) {
    auto n = make(K::ListLit, tk);
    while (!accept_op("]")) {
      if (!n->kids.empty()) { expect_op(","); if (accept_op("]")) break; }
      n->kids.push_back(parse_expr());
    }
    return n;
  }
  if (accept_op("{")) {
    auto n = make(K::DictLit, tk);
    while (!accept_op("}")) {
      if (!n->kids.empty()) { expect_op(","); if (accept_op("}")) break; }
      n->kids.push_back(parse_expr());
      expect_op(":");
      n->kids.push_back(parse_expr());
    }
    return n;
  }
  fail(tk, fmt::format("unexpected {}", describe(tk)));
}

NodePtr Parser::parse_postfix(NodePtr n) {
  for (;;) {
    const Token& at = cur();
    if (accept_op(".")) {
      const Token& a = cur();
      if (a.type == Tok::Int) {
        ++p_;
        auto idx = make(K::Literal, a);
        try {
          idx->value = Value::integer(std::stoll(a.text));
        } catch (const std::exception&) {
          fail(a, "index out of range: " + a.text);
        }
        auto it = make(K::Item, at);
        it->kids = {n, idx};
        n = it;
        continue;
      }
      auto attr = make(K::Attr, at);
      attr->name = expect_name();
      attr->kids.push_back(n);
      n = attr;
    } else if (accept_op("[")) {
      n = parse_subscript(n, at);
    } else if (is_op("(")) {
      auto call = make(K::Call, at);
      call->kids.push_back(n);
      call_args(call);
      n = call;
    } else {
      return n;
    }
  }
}

NodePtr Parser::parse_subscript(NodePtr obj, const Token& at) {
  NodePtr a, b, c;
  bool slice = false;
  if (!is_op(":")) a = parse_expr();
  if (accept_op(":")) {
    slice = true;
    if (!is_op("]") && !is_op(":")) b = parse_expr();
    if (accept_op(":") && !is_op("]")) c = parse_expr();
  }
  expect_op("]");
  auto n = make(slice ? K::Slice : K::Item, at);
  n->kids = {obj, a};
  if (slice) { n->kids.push_back(b); n->kids.push_back(c); }
  return n;
}

// "(" args ")" appended to n->kids (positional) and n->kw.
void Parser::call_args(NodePtr& n) {
  expect_op("(");
  bool first = true;
  while (!accept_op(")")) {
    if (!first) { expect_op(","); if (accept_op(")")) break; }
    first = false;
    if (is_op("*") || is_op("**")) fail(cur(), "unsupported: *args / **kwargs in a call");
    if (cur().type == Tok::Name && t_[p_ + 1].type == Tok::Op && t_[p_ + 1].text == "=") {
      const std::string k = next().text;
      ++p_;
      n->kw.emplace_back(k, parse_expr());
    } else {
      if (!n->kw.empty()) fail(cur(), "positional argument after a keyword argument");
      n->kids.push_back(parse_expr());
    }
  }
}

NodePtr Parser::parse_filters(NodePtr n) {
  for (;;) {
    const Token& at = cur();
    if (accept_op("|")) {
      auto f = make(K::Filter, at);
      f->name = expect_name();
      f->kids.push_back(n);
      if (is_op("(")) call_args(f);
      n = f;
    } else if (accept_name("is")) {
      auto t = make(K::Test, at);
      t->negated = accept_name("not");
      t->name = expect_name();
      t->kids.push_back(n);
      const Token& a = cur();
      if (is_op("(")) {
        call_args(t);
      } else if ((a.type == Tok::Name || a.type == Tok::String || a.type == Tok::Int ||
                  a.type == Tok::Float || is_op("[") || is_op("{")) &&
                 !is_name("else") && !is_name("or") && !is_name("and")) {
        t->kids.push_back(parse_postfix(parse_primary()));
      }
      n = t;
    } else if (is_op("(")) {
      auto call = make(K::Call, at);
      call->kids.push_back(n);
      call_args(call);
      n = call;
    } else {
      return n;
    }
  }
}

}  // namespace

Body parse(const std::vector<Token>& tokens, const std::string& name) {
  return Parser(tokens, name).parse_template();
}

}  // namespace rlhf::jinja
