// jinja_builtins.h — the filters, tests, globals and Python methods that templates may call,
// with jinja2 / Python semantics (plus transformers' additions: tojson with ensure_ascii=False
// and indent, raise_exception, strftime_now, namespace).
// Filters: trim, tojson, length/count, upper, lower, capitalize, title, default/d, join,
// replace, first, last, list, items, selectattr, rejectattr, select, reject, map, string, int,
// float, abs, reverse, safe. Tests: defined, undefined, none, string, mapping, iterable,
// number, sequence, true, false, boolean, integer, float, callable, eq/equalto/==, ne/!=,
// lt/</gt/>/le/<=/ge/>=, in, odd, even, divisibleby, lower, upper, sameas.
// Methods: str.startswith/endswith/strip/lstrip/rstrip/split/rsplit/replace/upper/lower/title/
// capitalize/find/count/join/splitlines; dict.items/keys/values/get.
// Globals: range, namespace, dict, raise_exception(msg), strftime_now(fmt).
// Errors are rlhf::Error without a position (the evaluator adds the template position);
// raise_exception's error message is exactly its argument.
#pragma once
#include <string>

#include "common/chat/value.h"

namespace rlhf::jinja {

bool has_filter(const std::string& name);
bool has_test(const std::string& name);
// args.pos[0] is the filtered / tested value.
Value apply_filter(const std::string& name, const Args& args);
bool apply_test(const std::string& name, const Args& args);
// obj.name as jinja2's getattr: a method (bound), then (dict) the item; else Undefined with
// a hint naming the missing attribute. obj must not be Undefined (the caller errors).
Value get_attribute(const Value& obj, const std::string& name);
// obj[key] as jinja2's getitem: dict item / list or string index (negative allowed), then
// attribute; out of range or missing -> Undefined.
Value get_item(const Value& obj, const Value& key);
Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
Dict make_globals();
// Python str.strip / lstrip / rstrip: chars none -> Unicode whitespace.
std::string py_strip(const std::string& s, const Value& chars, bool left, bool right);

// Thrown by raise_exception(): the evaluator reports it as "... raise_exception: msg".
struct RaisedException : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace rlhf::jinja
