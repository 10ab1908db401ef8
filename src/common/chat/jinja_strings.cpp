// jinja_strings.cpp — Python's str methods, attribute / item access and slicing for the
// interpreter (declared in jinja_builtins.h). Strings are UTF-8; indices count code points.
#include <algorithm>

#include <fmt/format.h>
#include <utf8proc.h>

#include "common/chat/jinja_builtins.h"
#include "common/core/check.h"

namespace rlhf::jinja {
namespace {

std::vector<int32_t> decode(const std::string& s) {
  std::vector<int32_t> cps;
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(s.size());
  while (left > 0) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);
    if (n <= 0) { cp = *p; n = 1; }  // invalid byte: kept as is (re-encoded below as Latin-1)
    cps.push_back(cp);
    p += n;
    left -= n;
  }
  return cps;
}

std::string encode(const std::vector<int32_t>& cps, size_t from = 0, size_t to = std::string::npos) {
  std::string out;
  to = std::min(to, cps.size());
  for (size_t k = from; k < to; ++k) {
    utf8proc_uint8_t buf[4];
    const auto n = utf8proc_encode_char(cps[k], buf);
    out.append(reinterpret_cast<char*>(buf), static_cast<size_t>(n));
  }
  return out;
}

bool py_space(int32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
         c == 0x202f || c == 0x205f || c == 0x3000;
}

std::string map_case(const std::string& s, int mode) {  // 0 lower, 1 upper, 2 title, 3 capitalize
  std::vector<int32_t> cps = decode(s);
  bool prev_cased = false;
  for (size_t k = 0; k < cps.size(); ++k) {
    const int32_t c = cps[k];
    const bool cased = utf8proc_tolower(c) != c || utf8proc_toupper(c) != c;
    bool up = mode == 1;
    if (mode == 2) up = !prev_cased;
    if (mode == 3) up = k == 0;
    cps[k] = up ? utf8proc_toupper(c) : utf8proc_tolower(c);
    prev_cased = cased;
  }
  return encode(cps);
}

const std::string& need_str(const Value& v, const char* what) {
  if (!v.is_string()) throw Error(fmt::format("{} expects a string, got {}", what, kind_name(v)));
  return v.s;
}

Value arg(const Args& a, size_t i, const char* kw, Value dflt = Value::none()) {
  if (i < a.pos.size()) return a.pos[i];
  if (kw)
    if (const Value* v = a.kwarg(kw)) return *v;
  return dflt;
}

Value split(const std::string& s, const Value& sep, int64_t maxsplit, bool from_right) {
  List parts;
  if (sep.is_none() || sep.is_undefined()) {
    std::vector<int32_t> cps = decode(s);
    if (from_right) std::reverse(cps.begin(), cps.end());
    size_t k = 0;
    while (k < cps.size()) {
      while (k < cps.size() && py_space(cps[k])) ++k;
      if (k >= cps.size()) break;
      size_t e = k;
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
        e = cps.size();  // the rest, as Python keeps it
      } else {
        while (e < cps.size() && !py_space(cps[e])) ++e;
      }
      std::vector<int32_t> w(cps.begin() + k, cps.begin() + e);
      if (from_right) std::reverse(w.begin(), w.end());
      parts.push_back(Value::str(encode(w)));
      k = e;
    }
    if (from_right) std::reverse(parts.begin(), parts.end());
    return Value::make_list(std::move(parts));
  }
  const std::string& d = need_str(sep, "split");
  if (d.empty()) throw Error("empty separator");
  if (!from_right) {
    size_t k = 0;
    for (size_t f; (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) &&
                   (f = s.find(d, k)) != std::string::npos; k = f + d.size())
      parts.push_back(Value::str(s.substr(k, f - k)));
    parts.push_back(Value::str(s.substr(k)));
    return Value::make_list(std::move(parts));
  }
  size_t end = s.size();
  while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
    if (end < d.size()) break;
    const size_t f = s.rfind(d, end - d.size());
    if (f == std::string::npos) break;
    parts.insert(parts.begin(), Value::str(s.substr(f + d.size(), end - f - d.size())));
    end = f;
  }
  parts.insert(parts.begin(), Value::str(s.substr(0, end)));
  return Value::make_list(std::move(parts));
}

std::string replace(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  if (from.empty()) throw Error("replace with an empty old string is not supported");
  std::string out;
  size_t k = 0;
  for (size_t f; count != 0 && (f = s.find(from, k)) != std::string::npos; k = f + from.size(), --count)
    out += s.substr(k, f - k) + to;
  return out + s.substr(k);
}

bool affix(const std::string& s, const Value& a, bool start) {
  auto one = [&](const std::string& x) {
    return x.size() <= s.size() && (start ? s.compare(0, x.size(), x) == 0
                                          : s.compare(s.size() - x.size(), x.size(), x) == 0);
  };
  if (a.is_list()) {
    for (const auto& x : *a.list)
      if (one(need_str(x, start ? "startswith" : "endswith"))) return true;
    return false;
  }
  return one(need_str(a, start ? "startswith" : "endswith"));
}

Value string_method(const std::string& s, const std::string& m, const Args& a) {
  if (m == "startswith" || m == "endswith") return Value::boolean(affix(s, arg(a, 0, nullptr), m == "startswith"));
  if (m == "strip" || m == "lstrip" || m == "rstrip")
    return Value::str(py_strip(s, arg(a, 0, "chars"), m != "rstrip", m != "lstrip"));
  if (m == "split" || m == "rsplit")
    return split(s, arg(a, 0, "sep"), arg(a, 1, "maxsplit", Value::integer(-1)).as_int(), m == "rsplit");
  if (m == "replace")
    return Value::str(replace(s, need_str(arg(a, 0, nullptr), "replace"), need_str(arg(a, 1, nullptr), "replace"),
                              arg(a, 2, "count", Value::integer(-1)).as_int()));
  if (m == "upper") return Value::str(map_case(s, 1));
  if (m == "lower") return Value::str(map_case(s, 0));
  if (m == "title") return Value::str(map_case(s, 2));
  if (m == "capitalize") return Value::str(map_case(s, 3));
  if (m == "find") {
    const size_t f = s.find(need_str(arg(a, 0, nullptr), "find"));
    return Value::integer(f == std::string::npos ? -1 : static_cast<int64_t>(decode(s.substr(0, f)).size()));
  }
  if (m == "count") {
    const std::string& x = need_str(arg(a, 0, nullptr), "count");
    int64_t n = 0;
    if (x.empty()) return Value::integer(static_cast<int64_t>(decode(s).size()) + 1);
    for (size_t f = s.find(x); f != std::string::npos; f = s.find(x, f + x.size())) ++n;
    return Value::integer(n);
  }
  if (m == "join") {
    std::string out;
    bool first = true;
    for (const auto& v : iterate(arg(a, 0, nullptr))) {
      out += (first ? "" : s) + need_str(v, "join");
      first = false;
    }
    return Value::str(out);
  }
  List lines;  // splitlines
  size_t k = 0;
  for (size_t f; (f = s.find_first_of("\r\n", k)) != std::string::npos;) {
    lines.push_back(Value::str(s.substr(k, f - k)));
    k = f + ((s[f] == '\r' && f + 1 < s.size() && s[f + 1] == '\n') ? 2 : 1);
  }
  if (k < s.size()) lines.push_back(Value::str(s.substr(k)));
  return Value::make_list(std::move(lines));
}

const char* kStringMethods[] = {"startswith", "endswith", "strip", "lstrip", "rstrip", "split",
                                "rsplit", "replace", "upper", "lower", "title", "capitalize",
                                "find", "count", "join", "splitlines"};

Value dict_method(const Value& d, const std::string& m, const Args& a) {
  if (m == "get") {
    const Value* v = d.find(need_str(arg(a, 0, nullptr), "get"));
    return v ? *v : arg(a, 1, nullptr);
  }
  List out;
  for (const auto& [k, v] : *d.dict) {
    if (m == "keys") out.push_back(Value::str(k));
    else if (m == "values") out.push_back(v);
    else out.push_back(Value::make_list({Value::str(k), v}));
  }
  return Value::make_list(std::move(out));
}

int64_t norm_index(int64_t i, int64_t n) { return i < 0 ? i + n : i; }

}  // namespace

std::string py_strip(const std::string& s, const Value& chars, bool left, bool right) {
  const std::vector<int32_t> cps = decode(s);
  std::vector<int32_t> set;
  const bool ws = chars.is_none() || chars.is_undefined();
  if (!ws) set = decode(need_str(chars, "strip"));
  auto strip_it = [&](int32_t c) { return ws ? py_space(c) : std::find(set.begin(), set.end(), c) != set.end(); };
  size_t b = 0, e = cps.size();
  if (left) while (b < e && strip_it(cps[b])) ++b;
  if (right) while (e > b && strip_it(cps[e - 1])) --e;
  return encode(cps, b, e);
}

Value get_attribute(const Value& obj, const std::string& name) {
  if (obj.is_string()) {
    for (const char* m : kStringMethods)
      if (name == m) {
        const std::string s = obj.s;
        return Value::callable([s, name](const Args& a) { return string_method(s, name, a); });
      }
  } else if (obj.is_dict()) {
    if (!obj.is_namespace && (name == "items" || name == "keys" || name == "values" || name == "get"))
      return Value::callable([obj, name](const Args& a) { return dict_method(obj, name, a); });
    if (const Value* v = obj.find(name)) return *v;
  }
  return Value::undefined(fmt::format("'{}' has no attribute '{}'",
                                      obj.is_dict() && !obj.is_namespace ? "dict object" : kind_name(obj),
                                      name));
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is_dict() && key.is_string()) {
    if (const Value* v = obj.find(key.s)) return *v;
  } else if ((obj.is_list() || obj.is_string()) && key.is_int_like()) {
    const List items = obj.is_list() ? *obj.list : iterate(obj);
    const int64_t i = norm_index(key.as_int(), static_cast<int64_t>(items.size()));
    if (i >= 0 && i < static_cast<int64_t>(items.size())) return items[static_cast<size_t>(i)];
    return Value::undefined(fmt::format("{} object has no element {}", kind_name(obj), key.as_int()));
  }
  if (key.is_string()) return get_attribute(obj, key.s);
  return Value::undefined(fmt::format("{} object has no element {}", kind_name(obj), repr(key)));
}

Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (!obj.is_list() && !obj.is_string()) throw Error(fmt::format("'{}' object is not subscriptable", kind_name(obj)));
  const List items = obj.is_list() ? *obj.list : iterate(obj);
  const int64_t n = static_cast<int64_t>(items.size());
  const int64_t st = step.is_none() ? 1 : step.as_int();
  if (st == 0) throw Error("slice step cannot be zero");
  auto bound = [&](const Value& v, int64_t dflt) {
    if (v.is_none()) return dflt;
    int64_t i = norm_index(v.as_int(), n);
    return st > 0 ? std::clamp<int64_t>(i, 0, n) : std::clamp<int64_t>(i, -1, n - 1);
  };
  const int64_t b = bound(start, st > 0 ? 0 : n - 1), e = bound(stop, st > 0 ? n : -1);
  List out;
  for (int64_t i = b; st > 0 ? i < e : i > e; i += st) out.push_back(items[static_cast<size_t>(i)]);
  if (obj.is_list()) return Value::make_list(std::move(out));
  std::string s;
  for (const auto& c : out) s += c.s;
  return Value::str(s);
}

}  // namespace rlhf::jinja
