// jinja_eval.cpp — see jinja_eval.h. Statements write to one output string; expressions give
// Values. Scopes: a stack of frames (the root frame holds the variables and globals; each
// for-loop iteration and each macro call pushes one); `set` writes the innermost frame.
#include "common/chat/jinja_eval.h"

#include <cmath>
#include <unordered_map>

#include <fmt/format.h>

#include "common/chat/jinja_builtins.h"
#include "common/chat/jinja_lexer.h"
#include "common/chat/jinja_parser.h"
#include "common/core/check.h"

namespace rlhf::jinja {
namespace {

using K = Node::K;
using Frame = std::unordered_map<std::string, Value>;
enum class Flow { Normal, Break, Continue };

bool positioned(const std::string& msg) { return msg.rfind("template '", 0) == 0; }

// Every filter / test name used anywhere in the tree must exist (jinja2 checks at compile time).
void check_names(const Body& body, const std::string& name);
void check_node(const NodePtr& n, const std::string& name) {
  if (!n) return;
  if (n->k == K::Filter && !has_filter(n->name))
    throw Error(position_message(name, n->line, n->col, fmt::format("no filter named '{}'", n->name)));
  if (n->k == K::Test && !has_test(n->name))
    throw Error(position_message(name, n->line, n->col, fmt::format("no test named '{}'", n->name)));
  for (const auto& k : n->kids) check_node(k, name);
  for (const auto& kv : n->kw) check_node(kv.second, name);
  for (const auto& br : n->branches) { check_node(br.first, name); check_names(br.second, name); }
  check_names(n->body, name);
  check_names(n->else_body, name);
}
void check_names(const Body& body, const std::string& name) {
  for (const auto& n : body) check_node(n, name);
}

class Evaluator {
 public:
  Evaluator(const std::string& name, std::string& out) : name_(name), out_(out) {}

  void run(const Body& body, const Dict& vars) {
    scopes_.emplace_back();
    for (auto& [k, v] : make_globals()) scopes_.back()[k] = v;
    for (const auto& [k, v] : vars) scopes_.back()[k] = v;
    exec(body);
  }

 private:
  [[noreturn]] void fail(const Node& n, const std::string& msg) const {
    throw Error(position_message(name_, n.line, n.col, msg));
  }

  Value lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    return Value::undefined(fmt::format("'{}' is undefined", name));
  }

  // An operation on Undefined other than printing, testing, comparing and iterating.
  void no_undefined(const Node& n, const Value& v) const {
    if (v.is_undefined()) fail(n, v.s.empty() ? "undefined value" : v.s);
  }

  Flow exec(const Body& body) {
    for (const auto& n : body) {
      const Flow f = exec_one(*n);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  Flow exec_one(const Node& n) {
    switch (n.k) {
      case K::Text: out_ += n.name; return Flow::Normal;
      case K::Output: out_ += to_str(eval(*n.kids[0])); return Flow::Normal;
      case K::If:
        for (const auto& [cond, body] : n.branches)
          if (truthy(eval(*cond))) return exec(body);
        return exec(n.else_body);
      case K::For: return exec_for(n);
      case K::Set: exec_set(n, eval(*n.kids[0])); return Flow::Normal;
      case K::SetBlock: exec_set(n, Value::str(capture(n.body))); return Flow::Normal;
      case K::Macro: scopes_.back()[n.name] = make_macro(n); return Flow::Normal;
      case K::CallBlock: out_ += to_str(call_block(n)); return Flow::Normal;
      case K::Break: return Flow::Break;
      case K::Continue: return Flow::Continue;
      case K::Generation: return exec(n.body);
      default: fail(n, "not a statement");
    }
  }

  std::string capture(const Body& body) {
    std::string saved;
    std::swap(saved, out_);
    exec(body);
    std::swap(saved, out_);
    return saved;
  }

  void exec_set(const Node& n, Value v) {
    if (n.name.empty()) { scopes_.back()[n.targets[0]] = std::move(v); return; }
    Value ns = lookup(n.targets[0]);
    if (!ns.is_dict() || !ns.is_namespace)
      fail(n, fmt::format("cannot assign attribute on non-namespace object '{}'", n.targets[0]));
    ns.set(n.name, std::move(v));
  }

  void bind(Frame& f, const Node& n, const Value& item) {
    if (n.targets.size() == 1) { f[n.targets[0]] = item; return; }
    const List parts = iterate(item);
    if (parts.size() != n.targets.size())
      fail(n, fmt::format("cannot unpack {} values into {} loop variables", parts.size(), n.targets.size()));
    for (size_t k = 0; k < parts.size(); ++k) f[n.targets[k]] = parts[k];
  }

  Flow exec_for(const Node& n) {
    const Value seq = eval(*n.kids[0]);
    if (!(seq.is_list() || seq.is_dict() || seq.is_string() || seq.is_undefined()))
      fail(*n.kids[0], fmt::format("'{}' object is not iterable", kind_name(seq)));
    List items = iterate(seq);
    if (n.kids[1]) {
      List kept;
      for (const auto& it : items) {
        scopes_.emplace_back();
        bind(scopes_.back(), n, it);
        const bool keep = truthy(eval(*n.kids[1]));
        scopes_.pop_back();
        if (keep) kept.push_back(it);
      }
      items.swap(kept);
    }
    if (items.empty()) return exec(n.else_body);
    const int64_t len = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < len; ++i) {
      Value loop = Value::make_dict({{"index", Value::integer(i + 1)}, {"index0", Value::integer(i)},
                                     {"revindex", Value::integer(len - i)}, {"revindex0", Value::integer(len - i - 1)},
                                     {"first", Value::boolean(i == 0)}, {"last", Value::boolean(i == len - 1)},
                                     {"length", Value::integer(len)},
                                     {"previtem", i > 0 ? items[i - 1] : Value::undefined("there is no previous item")},
                                     {"nextitem", i + 1 < len ? items[i + 1] : Value::undefined("there is no next item")}});
      loop.set("cycle", Value::callable([i](const Args& a) {
        if (a.pos.empty()) throw Error("no items for cycling given");
        return a.pos[static_cast<size_t>(i) % a.pos.size()];
      }));
      scopes_.emplace_back();
      bind(scopes_.back(), n, items[i]);
      scopes_.back()["loop"] = loop;
      const Flow f = exec(n.body);
      scopes_.pop_back();
      if (f == Flow::Break) break;
    }
    return Flow::Normal;
  }

  // A macro as a callable; a `caller` keyword (the body of a {% call %} block) is bound too.
  Value make_macro(const Node& n) {
    const Node* def = &n;
    return Value::callable([this, def](const Args& a) {
      Frame f;
      for (size_t k = 0; k < def->targets.size(); ++k) {
        const Value* kw = a.kwarg(def->targets[k]);
        if (k < a.pos.size()) f[def->targets[k]] = a.pos[k];
        else if (kw) f[def->targets[k]] = *kw;
        else if (def->kids[k]) f[def->targets[k]] = eval(*def->kids[k]);
        else f[def->targets[k]] = Value::undefined(fmt::format("'{}' is undefined", def->targets[k]));
      }
      if (const Value* c = a.kwarg("caller")) f["caller"] = *c;
      std::vector<Frame> saved;
      saved.swap(scopes_);
      scopes_.push_back(saved.front());
      scopes_.push_back(std::move(f));
      std::string text;
      try {
        text = capture(def->body);
      } catch (...) {
        scopes_.swap(saved);
        throw;
      }
      scopes_.swap(saved);
      return Value::str(text);
    });
  }

  Value call_block(const Node& n) {
    const Node& call = *n.kids[0];
    Node sig(K::Macro, n.line, n.col);
    sig.targets = n.targets;
    sig.kids.assign(n.kids.begin() + 1, n.kids.end());
    sig.body = n.body;
    const Value caller = make_macro(sig);
    Value fn = eval(*call.kids[0]);
    no_undefined(call, fn);
    Args a = eval_args(call);
    a.kw.emplace_back("caller", caller);
    if (fn.kind != Value::Kind::Callable) fail(call, fmt::format("'{}' object is not callable", kind_name(fn)));
    return (*fn.fn)(a);
  }

  Args eval_args(const Node& n, size_t from = 1) {
    Args a;
    for (size_t k = from; k < n.kids.size(); ++k) a.pos.push_back(eval(*n.kids[k]));
    for (const auto& [k, v] : n.kw) a.kw.emplace_back(k, eval(*v));
    return a;
  }

 public:
  Value eval(const Node& n) {
    try {
      return eval_inner(n);
    } catch (const RaisedException& e) {
      fail(n, std::string("raise_exception: ") + e.what());
    } catch (const Error& e) {
      if (positioned(e.what())) throw;
      fail(n, e.what());
    }
  }

 private:
  Value eval_inner(const Node& n);
  Value binary(const Node& n);
  Value arithmetic(const Node& n, const std::string& op, const Value& a, const Value& b);

  const std::string& name_;
  std::string& out_;
  std::vector<Frame> scopes_;
};

Value Evaluator::eval_inner(const Node& n) {
  switch (n.k) {
    case K::Literal: return n.value;
    case K::Name: return lookup(n.name);
    case K::Attr: {
      const Value obj = eval(*n.kids[0]);
      no_undefined(n, obj);
      return get_attribute(obj, n.name);
    }
    case K::Item: {
      const Value obj = eval(*n.kids[0]);
      no_undefined(n, obj);
      return get_item(obj, eval(*n.kids[1]));
    }
    case K::Slice: {
      const Value obj = eval(*n.kids[0]);
      no_undefined(n, obj);
      auto opt = [&](size_t k) { return n.kids[k] ? eval(*n.kids[k]) : Value::none(); };
      return slice(obj, opt(1), opt(2), opt(3));
    }
    case K::Call: {
      const Value fn = eval(*n.kids[0]);
      no_undefined(n, fn);
      if (fn.kind != Value::Kind::Callable) fail(n, fmt::format("'{}' object is not callable", kind_name(fn)));
      return (*fn.fn)(eval_args(n));
    }
    case K::Filter: {
      Args a = eval_args(n, 0);
      return apply_filter(n.name, a);
    }
    case K::Test: return Value::boolean(apply_test(n.name, eval_args(n, 0)) != n.negated);
    case K::Unary: {
      const Value v = eval(*n.kids[0]);
      if (n.name == "not") return Value::boolean(!truthy(v));
      no_undefined(n, v);
      if (!v.is_number()) fail(n, fmt::format("bad operand type for unary {}: '{}'", n.name, kind_name(v)));
      if (n.name == "+") return v.kind == Value::Kind::Bool ? Value::integer(v.as_int()) : v;
      return v.kind == Value::Kind::Float ? Value::real(-v.f) : Value::integer(-v.as_int());
    }
    case K::Binary: return binary(n);
    case K::Cond:
      if (truthy(eval(*n.kids[1]))) return eval(*n.kids[0]);
      return n.kids[2] ? eval(*n.kids[2]) : Value::undefined("the inline if-expression evaluated to false and no else section was defined");
    case K::ListLit: {
      List l;
      for (const auto& k : n.kids) l.push_back(eval(*k));
      return Value::make_list(std::move(l));
    }
    case K::DictLit: {
      Value d = Value::make_dict();
      for (size_t k = 0; k < n.kids.size(); k += 2) {
        const Value key = eval(*n.kids[k]);
        if (!key.is_string()) fail(*n.kids[k], "unsupported: dict keys other than strings");
        d.set(key.s, eval(*n.kids[k + 1]));
      }
      return d;
    }
    default: fail(n, "not an expression");
  }
}

Value Evaluator::binary(const Node& n) {
  const std::string& op = n.name;
  const Value a = eval(*n.kids[0]);
  if (op == "and") return truthy(a) ? eval(*n.kids[1]) : a;
  if (op == "or") return truthy(a) ? a : eval(*n.kids[1]);
  const Value b = eval(*n.kids[1]);
  if (op == "==") return Value::boolean(equal(a, b));
  if (op == "!=") return Value::boolean(!equal(a, b));
  if (op == "in" || op == "not in") {
    if (b.is_string() && !a.is_string()) fail(n, fmt::format("'in <string>' requires string as left operand, not {}", kind_name(a)));
    Args t;
    t.pos = {a, b};
    return Value::boolean(apply_test("in", t) == (op == "in"));
  }
  if (op == "~") return Value::str(to_str(a) + to_str(b));
  no_undefined(n, a);
  no_undefined(n, b);
  if (op == "<" || op == ">" || op == "<=" || op == ">=") {
    const int c = compare(a, b);
    return Value::boolean(op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0);
  }
  return arithmetic(n, op, a, b);
}

Value Evaluator::arithmetic(const Node& n, const std::string& op, const Value& a, const Value& b) {
  if (op == "+" && a.is_string() && b.is_string()) return Value::str(a.s + b.s);
  if (op == "+" && a.is_list() && b.is_list()) {
    List l = *a.list;
    l.insert(l.end(), b.list->begin(), b.list->end());
    return Value::make_list(std::move(l));
  }
  if (op == "*" && (a.is_string() || a.is_list()) && b.is_int_like()) {
    if (a.is_string()) {
      std::string s;
      for (int64_t k = 0; k < b.as_int(); ++k) s += a.s;
      return Value::str(s);
    }
    List l;
    for (int64_t k = 0; k < b.as_int(); ++k) l.insert(l.end(), a.list->begin(), a.list->end());
    return Value::make_list(std::move(l));
  }
  if (!a.is_number() || !b.is_number())
    fail(n, fmt::format("unsupported operand type(s) for {}: '{}' and '{}'", op, kind_name(a), kind_name(b)));
  const bool ints = a.is_int_like() && b.is_int_like();
  const double x = a.as_double(), y = b.as_double();
  if (op == "/") {
    if (y == 0) fail(n, "division by zero");
    return Value::real(x / y);
  }
  if ((op == "//" || op == "%") && y == 0) fail(n, "integer division or modulo by zero");
  if (ints) {
    const int64_t p = a.as_int(), q = b.as_int();
    if (op == "+") return Value::integer(p + q);
    if (op == "-") return Value::integer(p - q);
    if (op == "*") return Value::integer(p * q);
    const int64_t fl = p / q - ((p % q != 0) && ((p < 0) != (q < 0)) ? 1 : 0);
    if (op == "//") return Value::integer(fl);
    if (op == "%") return Value::integer(p - fl * q);
    if (op == "**" && q >= 0) {
      int64_t r = 1;
      for (int64_t k = 0; k < q; ++k) r *= p;
      return Value::integer(r);
    }
  }
  if (op == "+") return Value::real(x + y);
  if (op == "-") return Value::real(x - y);
  if (op == "*") return Value::real(x * y);
  if (op == "//") return Value::real(std::floor(x / y));
  if (op == "%") return Value::real(x - std::floor(x / y) * y);
  if (op == "**") return Value::real(std::pow(x, y));
  fail(n, fmt::format("unsupported operator '{}'", op));
}

}  // namespace

Template::Template(std::string name, const std::string& source) : name_(std::move(name)) {
  body_ = parse(lex(source, name_), name_);
  check_names(body_, name_);
}

std::string Template::render(const Dict& vars) const {
  std::string out;
  Evaluator ev(name_, out);
  ev.run(body_, vars);
  return out;
}

}  // namespace rlhf::jinja
