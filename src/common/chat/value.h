// value.h — the runtime values of the chat-template interpreter (jinja_eval.h), with Python's
// semantics where Jinja inherits them: truthiness, equality (1 == 1.0 == True), ordering of
// numbers and strings, str() (None -> "None", True -> "True", lists and dicts as Python repr)
// and json.dumps (Hugging Face's tojson: ensure_ascii=False, optional indent, insertion order).
// Kinds: Undefined (jinja2's default Undefined: prints "", is false, iterates as empty, equals
// only another Undefined; anything else done with it is an error naming it), None, Bool, Int,
// Float, String (UTF-8 bytes), List (tuples too: a tuple prints as a list, [1, 2] not (1, 2)), Dict (string keys, insertion order; a
// namespace() is a Dict with is_namespace set), Callable (globals, bound methods, macros).
// Lists and dicts are shared by reference (a namespace is mutated through `set ns.x = ...`).
// from_json converts nlohmann::json / ordered_json input (messages, extra variables).
// Not thread-safe to mutate a shared value; rendering owns its values.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace rlhf::jinja {

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion order, unique keys

// Arguments of a call: positional, then keyword (name, value) in source order.
struct Args {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  const Value* kwarg(const std::string& name) const;
};
using Function = std::function<Value(const Args&)>;

struct Value {
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Callable };
  Kind kind = Kind::Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // String: the text; Undefined: the name that was looked up (for errors)
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;
  bool is_namespace = false;
  std::shared_ptr<Function> fn;

  static Value undefined(std::string name = "") { Value v; v.s = std::move(name); return v; }
  static Value none() { Value v; v.kind = Kind::None; return v; }
  static Value boolean(bool x) { Value v; v.kind = Kind::Bool; v.b = x; return v; }
  static Value integer(int64_t x) { Value v; v.kind = Kind::Int; v.i = x; return v; }
  static Value real(double x) { Value v; v.kind = Kind::Float; v.f = x; return v; }
  static Value str(std::string x) { Value v; v.kind = Kind::String; v.s = std::move(x); return v; }
  static Value make_list(List x = {});
  static Value make_dict(Dict x = {});
  static Value callable(Function fn);

  bool is_undefined() const { return kind == Kind::Undefined; }
  bool is_none() const { return kind == Kind::None; }
  bool is_string() const { return kind == Kind::String; }
  bool is_list() const { return kind == Kind::List; }
  bool is_dict() const { return kind == Kind::Dict; }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float || kind == Kind::Bool; }
  bool is_int_like() const { return kind == Kind::Int || kind == Kind::Bool; }
  double as_double() const { return kind == Kind::Float ? f : static_cast<double>(as_int()); }
  int64_t as_int() const { return kind == Kind::Bool ? (b ? 1 : 0) : kind == Kind::Float ? static_cast<int64_t>(f) : i; }

  // Dict lookup: nullptr when absent (or not a dict).
  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value v);  // dict only: replace or append
};

const char* kind_name(const Value& v);  // Python-ish: "str", "int", "list", "dict", ...
bool truthy(const Value& v);
bool equal(const Value& a, const Value& b);
// -1/0/1; throws rlhf::Error (message without position) for unorderable kinds.
int compare(const Value& a, const Value& b);
std::string to_str(const Value& v);   // Python str(); Undefined -> ""
std::string repr(const Value& v);     // Python repr()
std::string python_float(double x);   // Python repr of a float ("1.0", "1e+20", "inf")
// json.dumps(v, ensure_ascii=False, indent=indent (<0: None), sort_keys=sort_keys).
std::string to_json(const Value& v, int indent = -1, bool sort_keys = false);
// Items a for-loop / list() iterates: list elements, dict keys, string characters (UTF-8 code
// points); Undefined -> empty. Throws rlhf::Error (no position) for other kinds.
List iterate(const Value& v);

template <class J>
Value from_json(const J& j) {
  if (j.is_null()) return Value::none();
  if (j.is_boolean()) return Value::boolean(j.template get<bool>());
  if (j.is_number_integer()) return Value::integer(j.template get<int64_t>());
  if (j.is_number()) return Value::real(j.template get<double>());
  if (j.is_string()) return Value::str(j.template get<std::string>());
  if (j.is_array()) {
    List l;
    for (const auto& e : j) l.push_back(from_json(e));
    return Value::make_list(std::move(l));
  }
  Dict d;
  for (auto it = j.begin(); it != j.end(); ++it) d.emplace_back(it.key(), from_json(it.value()));
  return Value::make_dict(std::move(d));
}

}  // namespace rlhf::jinja
