// jinja_builtins.cpp — filters, tests and globals (see jinja_builtins.h); Python methods and
// item access are in jinja_strings.cpp.
#include "common/chat/jinja_builtins.h"

#include <chrono>
#include <cmath>
#include <ctime>
#include <set>

#include <fmt/format.h>

#include "common/core/check.h"

namespace rlhf::jinja {
namespace {

Value arg(const Args& a, size_t i, const char* kw, Value dflt = Value::none()) {
  if (i < a.pos.size()) return a.pos[i];
  if (kw)
    if (const Value* v = a.kwarg(kw)) return *v;
  return dflt;
}

int64_t length(const Value& v) {
  if (v.is_list()) return static_cast<int64_t>(v.list->size());
  if (v.is_dict()) return static_cast<int64_t>(v.dict->size());
  if (v.is_string() || v.is_undefined()) return static_cast<int64_t>(iterate(v).size());
  throw Error(fmt::format("object of type '{}' has no len()", kind_name(v)));
}

Value parse_number(const Value& v, bool as_int, const Value& dflt) {
  if (v.is_number()) return as_int ? Value::integer(v.as_int()) : Value::real(v.as_double());
  if (v.is_string()) {
    try {
      size_t used = 0;
      const std::string s = py_strip(v.s, Value::none(), true, true);
      if (as_int) {
        const int64_t x = std::stoll(s, &used, 10);
        if (used == s.size()) return Value::integer(x);
        const double d = std::stod(s, &used);  // jinja2's int filter accepts "3.7" -> 3
        if (used == s.size()) return Value::integer(static_cast<int64_t>(d));
      } else {
        const double d = std::stod(s, &used);
        if (used == s.size()) return Value::real(d);
      }
    } catch (const std::exception&) {
    }
  }
  return dflt;
}

// Args for a test called from select/selectattr: the value, then the extra arguments.
Args test_args(const Value& v, const Args& a, size_t from) {
  Args t;
  t.pos.push_back(v);
  for (size_t k = from; k < a.pos.size(); ++k) t.pos.push_back(a.pos[k]);
  return t;
}

Value attribute_path(const Value& v, const std::string& path) {
  Value cur = v;
  size_t k = 0;
  for (;;) {
    const size_t dot = path.find('.', k);
    const std::string part = path.substr(k, dot == std::string::npos ? std::string::npos : dot - k);
    cur = cur.is_undefined() ? cur : get_item(cur, Value::str(part));
    if (dot == std::string::npos) return cur;
    k = dot + 1;
  }
}

std::string need_attr(const Args& a) { return to_str(arg(a, 1, nullptr)); }

Value select(const Args& a, bool by_attr, bool keep) {
  List out;
  const size_t test_at = by_attr ? 2 : 1;
  const Value test = arg(a, test_at, nullptr);
  for (const auto& item : iterate(a.pos[0])) {
    const Value v = by_attr ? attribute_path(item, need_attr(a)) : item;
    const bool ok = test.is_none() ? truthy(v) : apply_test(test.s, test_args(v, a, test_at + 1));
    if (ok == keep) out.push_back(item);
  }
  return Value::make_list(std::move(out));
}

Value map_filter(const Args& a) {
  List out;
  const Value* attr = a.kwarg("attribute");
  const Value* dflt = a.kwarg("default");
  for (const auto& item : iterate(a.pos[0])) {
    if (attr) {
      Value v = attribute_path(item, to_str(*attr));
      out.push_back(v.is_undefined() && dflt ? *dflt : v);
    } else {
      Args f;
      f.pos.push_back(item);
      for (size_t k = 2; k < a.pos.size(); ++k) f.pos.push_back(a.pos[k]);
      f.kw = a.kw;
      out.push_back(apply_filter(to_str(arg(a, 1, nullptr)), f));
    }
  }
  return Value::make_list(std::move(out));
}

Value tojson(const Args& a) {
  const Value indent = arg(a, 2, "indent");
  const Value separators = arg(a, 3, "separators");
  if (!separators.is_none()) throw Error("tojson: the separators argument is not supported");
  if (truthy(arg(a, 1, "ensure_ascii", Value::boolean(false))))
    throw Error("tojson: ensure_ascii=True is not supported");
  return Value::str(to_json(a.pos[0], indent.is_none() ? -1 : static_cast<int>(indent.as_int()),
                            truthy(arg(a, 4, "sort_keys", Value::boolean(false)))));
}

Value join(const Args& a) {
  const std::string sep = to_str(arg(a, 1, "d", Value::str("")));
  const Value* attr = a.kwarg("attribute");
  std::string out;
  bool first = true;
  for (const auto& item : iterate(a.pos[0])) {
    out += (first ? "" : sep) + to_str(attr ? attribute_path(item, to_str(*attr)) : item);
    first = false;
  }
  return Value::str(out);
}

const std::set<std::string>& filter_names() {
  static const std::set<std::string> names = {
      "trim", "tojson", "length", "count", "upper", "lower", "capitalize", "title", "default", "d",
      "join", "replace", "first", "last", "list", "items", "selectattr", "rejectattr", "select",
      "reject", "map", "string", "int", "float", "abs", "reverse", "safe"};
  return names;
}

const std::set<std::string>& test_names() {
  static const std::set<std::string> names = {
      "defined", "undefined", "none", "string", "mapping", "iterable", "number", "sequence",
      "true", "false", "boolean", "integer", "float", "callable", "eq", "equalto", "==", "ne",
      "!=", "lt", "<", "gt", ">", "le", "<=", "ge", ">=", "in", "odd", "even", "divisibleby",
      "lower", "upper", "sameas"};
  return names;
}

}  // namespace

bool has_filter(const std::string& name) { return filter_names().count(name) > 0; }
bool has_test(const std::string& name) { return test_names().count(name) > 0; }

Value apply_filter(const std::string& f, const Args& a) {
  const Value& v = a.pos.at(0);
  if (f == "trim") return Value::str(py_strip(to_str(v), arg(a, 1, "chars"), true, true));
  if (f == "tojson") return tojson(a);
  if (f == "length" || f == "count") return Value::integer(length(v));
  if (f == "upper" || f == "lower" || f == "capitalize" || f == "title")
    return get_attribute(Value::str(to_str(v)), f).fn->operator()(Args{});
  if (f == "default" || f == "d") {
    const bool boolean = truthy(arg(a, 2, "boolean", Value::boolean(false)));
    return (v.is_undefined() || (boolean && !truthy(v))) ? arg(a, 1, "default_value", Value::str("")) : v;
  }
  if (f == "join") return join(a);
  if (f == "replace") {
    Args m;
    m.pos = {arg(a, 1, "old"), arg(a, 2, "new"), arg(a, 3, "count", Value::integer(-1))};
    return get_attribute(Value::str(to_str(v)), "replace").fn->operator()(m);
  }
  if (f == "first" || f == "last") {
    const List items = iterate(v);
    if (items.empty()) return Value::undefined(fmt::format("No {} item, sequence was empty.", f));
    return f == "first" ? items.front() : items.back();
  }
  if (f == "list") return Value::make_list(iterate(v));
  if (f == "items") {
    if (v.is_undefined()) return Value::make_list();
    if (!v.is_dict()) throw Error(fmt::format("items: expected a mapping, got {}", kind_name(v)));
    return get_attribute(v, "items").fn->operator()(Args{});
  }
  if (f == "selectattr" || f == "rejectattr") return select(a, true, f == "selectattr");
  if (f == "select" || f == "reject") return select(a, false, f == "select");
  if (f == "map") return map_filter(a);
  if (f == "string" || f == "safe") return f == "safe" && v.is_string() ? v : Value::str(to_str(v));
  if (f == "int") return parse_number(v, true, arg(a, 1, "default", Value::integer(0)));
  if (f == "float") return parse_number(v, false, arg(a, 1, "default", Value::real(0)));
  if (f == "abs") {
    if (v.kind == Value::Kind::Float) return Value::real(std::fabs(v.f));
    if (v.is_number()) return Value::integer(std::llabs(v.as_int()));
    throw Error(fmt::format("bad operand type for abs(): '{}'", kind_name(v)));
  }
  if (f == "reverse") {
    if (v.is_string()) return slice(v, Value::none(), Value::none(), Value::integer(-1));
    List items = iterate(v);
    return Value::make_list(List(items.rbegin(), items.rend()));
  }
  throw Error(fmt::format("no filter named '{}'", f));
}

bool apply_test(const std::string& t, const Args& a) {
  const Value& v = a.pos.at(0);
  const Value o = arg(a, 1, nullptr);
  using K = Value::Kind;
  if (t == "defined") return !v.is_undefined();
  if (t == "undefined") return v.is_undefined();
  if (t == "none") return v.is_none();
  if (t == "string") return v.is_string();
  if (t == "mapping") return v.is_dict();
  if (t == "iterable") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (t == "sequence") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (t == "number") return v.is_number();
  if (t == "true") return v.kind == K::Bool && v.b;
  if (t == "false") return v.kind == K::Bool && !v.b;
  if (t == "boolean") return v.kind == K::Bool;
  if (t == "integer") return v.kind == K::Int;
  if (t == "float") return v.kind == K::Float;
  if (t == "callable") return v.kind == K::Callable;
  if (t == "eq" || t == "equalto" || t == "==") return equal(v, o);
  if (t == "ne" || t == "!=") return !equal(v, o);
  if (t == "lt" || t == "<") return compare(v, o) < 0;
  if (t == "gt" || t == ">") return compare(v, o) > 0;
  if (t == "le" || t == "<=") return compare(v, o) <= 0;
  if (t == "ge" || t == ">=") return compare(v, o) >= 0;
  if (t == "in") {
    if (o.is_string()) return v.is_string() && o.s.find(v.s) != std::string::npos;
    if (o.is_dict()) return v.is_string() && o.find(v.s);
    for (const auto& x : iterate(o))
      if (equal(x, v)) return true;
    return false;
  }
  if (t == "odd" || t == "even") {
    if (!v.is_int_like()) throw Error(fmt::format("test '{}' expects an integer", t));
    return (v.as_int() % 2 != 0) == (t == "odd");
  }
  if (t == "divisibleby") return o.as_int() != 0 && v.as_int() % o.as_int() == 0;
  if (t == "lower" || t == "upper")
    return v.is_string() && v.s == get_attribute(v, t).fn->operator()(Args{}).s;
  if (t == "sameas") return v.kind == o.kind && (v.is_none() || v.is_undefined() || equal(v, o));
  throw Error(fmt::format("no test named '{}'", t));
}

Dict make_globals() {
  Dict g;
  g.emplace_back("range", Value::callable([](const Args& a) {
    int64_t b = 0, e = 0, s = 1;
    if (a.pos.size() == 1) e = a.pos[0].as_int();
    else if (a.pos.size() >= 2) { b = a.pos[0].as_int(); e = a.pos[1].as_int(); }
    if (a.pos.size() >= 3) s = a.pos[2].as_int();
    if (s == 0) throw Error("range() arg 3 must not be zero");
    if ((e - b) / s > 100000) throw Error("range too big (more than 100000 items)");
    List out;
    for (int64_t i = b; s > 0 ? i < e : i > e; i += s) out.push_back(Value::integer(i));
    return Value::make_list(std::move(out));
  }));
  auto make_dict = [](const Args& a, bool ns) {
    Value d = Value::make_dict();
    d.is_namespace = ns;
    for (const auto& p : a.pos)
      if (p.is_dict())
        for (const auto& [k, v] : *p.dict) d.set(k, v);
    for (const auto& [k, v] : a.kw) d.set(k, v);
    return d;
  };
  g.emplace_back("namespace", Value::callable([make_dict](const Args& a) { return make_dict(a, true); }));
  g.emplace_back("dict", Value::callable([make_dict](const Args& a) { return make_dict(a, false); }));
  g.emplace_back("raise_exception", Value::callable([](const Args& a) -> Value {
    throw RaisedException(to_str(arg(a, 0, "message", Value::str(""))));
  }));
  g.emplace_back("strftime_now", Value::callable([](const Args& a) {
    const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[256];
    const size_t n = std::strftime(buf, sizeof buf, to_str(arg(a, 0, "format")).c_str(), &tm);
    return Value::str(std::string(buf, n));
  }));
  return g;
}

}  // namespace rlhf::jinja
