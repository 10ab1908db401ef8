// strings.h — small text helpers shared by every layer: tensor shapes in messages, and the one
// way enum <-> name tables are written.
// Contract: header-only; names are exact (case-sensitive); parse_enum throws rlhf::Error naming
// `what`, the value and the valid names.
#pragma once
#include <string>
#include <utility>

#include <ATen/core/TensorBody.h>
#include <fmt/format.h>

#include "common/core/check.h"

namespace rlhf {

// "[2, 3, 4]" for a shape; "undefined" for an undefined tensor.
inline std::string shape_str(c10::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}
inline std::string shape_str(const at::Tensor& t) {
  return t.defined() ? shape_str(t.sizes()) : std::string("undefined");
}

// An enum's names, written once next to the enum:
//   inline constexpr EnumNames<Family, 2> kFamilyNames{{{Family::GPT2, "gpt2"}, {...}}};
template <class E, size_t N>
struct EnumNames {
  std::pair<E, const char*> items[N];

  const char* name(E e) const {
    for (const auto& [v, n] : items)
      if (v == e) return n;
    return "?";
  }
  std::string valid() const {
    std::string s;
    for (size_t i = 0; i < N; ++i) s += (i ? " | " : "") + std::string(items[i].second);
    return s;
  }
  // The enum named `text`; throws naming `what` and the valid names otherwise.
  E parse(const std::string& text, const std::string& what) const {
    for (const auto& [v, n] : items)
      if (text == n) return v;
    throw Error(fmt::format("{}: '{}' is not one of {}", what, text, valid()));
  }
};

}  // namespace rlhf
