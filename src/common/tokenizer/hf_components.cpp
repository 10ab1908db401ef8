// hf_components.cpp — parsing and applying tokenizer.json's pipeline stages. See hf_components.h.
#include "common/tokenizer/hf_components.h"

#include <nlohmann/json.hpp>

#include "common/core/check.h"
#include "common/core/strings.h"
#include "common/tokenizer/text.h"

namespace rlhf::hf {

namespace {

using json = nlohmann::json;

const json& need(const json& j, const char* key, const JsonAt& at) {
  RLHF_CHECK(j.is_object() && j.contains(key), "{}: missing key '{}'", at.str(), key);
  return j.at(key);
}
std::string str_of(const json& j, const char* key, const JsonAt& at) {
  const json& v = need(j, key, at);
  RLHF_CHECK(v.is_string(), "{}: expected a string, got {}", at.at(key).str(), v.dump());
  return v.get<std::string>();
}
bool bool_of(const json& j, const char* key, const JsonAt& at, bool dflt) {
  if (!j.contains(key) || j.at(key).is_null()) return dflt;
  RLHF_CHECK(j.at(key).is_boolean(), "{}: expected true or false, got {}", at.at(key).str(),
             j.at(key).dump());
  return j.at(key).get<bool>();
}
std::string type_of(const json& j, const JsonAt& at) {
  RLHF_CHECK(j.is_object(), "{}: expected an object with a 'type', got {}", at.str(), j.dump());
  return str_of(j, "type", at);
}
[[noreturn]] void unsupported(const char* stage, const std::string& type, const JsonAt& at,
                              const char* supported) {
  throw Error(fmt::format("{}: unsupported {} type '{}' (supported: {})", at.at("type").str(),
                          stage, type, supported));
}
const json& list_of(const json& j, const char* key, const JsonAt& at) {
  const json& v = need(j, key, at);
  RLHF_CHECK(v.is_array(), "{}: expected a list, got {}", at.at(key).str(), v.type_name());
  return v;
}

Pattern parse_pattern(const json& j, const JsonAt& at) {
  Pattern p;
  RLHF_CHECK(j.is_object() && j.size() == 1 && (j.contains("String") || j.contains("Regex")),
             "{}: expected {{\"String\": ...}} or {{\"Regex\": ...}}, got {}", at.str(), j.dump());
  if (j.contains("String")) {
    p.literal = str_of(j, "String", at);
    RLHF_CHECK(!p.literal.empty(), "{}: empty String pattern", at.str());
  } else {
    p.re = std::make_shared<Regex>(str_of(j, "Regex", at), at.at("Regex").str());
  }
  return p;
}

PrependScheme parse_scheme(const json& j, const JsonAt& at) {
  if (!j.contains("prepend_scheme"))  // older files: add_prefix_space
    return bool_of(j, "add_prefix_space", at, true) ? PrependScheme::Always : PrependScheme::Never;
  static constexpr EnumNames<PrependScheme, 3> names{{{PrependScheme::Always, "always"},
                                                      {PrependScheme::First, "first"},
                                                      {PrependScheme::Never, "never"}}};
  return names.parse(str_of(j, "prepend_scheme", at), at.at("prepend_scheme").str().c_str());
}

std::string replace_all(const std::string& s, const Pattern& p, const std::string& with) {
  std::string out;
  size_t prev = 0;
  for (auto [b, e] : p.find_all(s)) {
    out.append(s, prev, b - prev);
    out += with;
    prev = e;
  }
  out.append(s, prev, std::string::npos);
  return out;
}

struct Span {
  size_t b, e;
  bool match;
};

// Cuts s into the pieces huggingface's NormalizedString::split produces for these matches.
std::vector<Span> split_spans(const std::string& s, const std::vector<std::pair<size_t, size_t>>& m,
                              SplitBehavior how, bool invert) {
  std::vector<Span> all;
  size_t prev = 0;
  for (auto [b, e] : m) {
    if (b > prev) all.push_back({prev, b, invert});
    all.push_back({b, e, !invert});
    prev = e;
  }
  if (s.size() > prev) all.push_back({prev, s.size(), invert});
  std::vector<Span> out;
  bool prev_match = false;
  switch (how) {
    case SplitBehavior::Removed:
      for (const auto& sp : all)
        if (!sp.match) out.push_back(sp);
      return out;
    case SplitBehavior::Isolated: return all;
    case SplitBehavior::MergedWithPrevious:
      for (const auto& sp : all) {
        if (sp.match && !prev_match && !out.empty()) out.back().e = sp.e;
        else out.push_back(sp);
        prev_match = sp.match;
      }
      return out;
    case SplitBehavior::MergedWithNext:
      for (auto it = all.rbegin(); it != all.rend(); ++it) {
        if (it->match && !prev_match && !out.empty()) out.back().b = it->b;
        else out.push_back(*it);
        prev_match = it->match;
      }
      return {out.rbegin(), out.rend()};
    case SplitBehavior::Contiguous:
      for (const auto& sp : all) {
        if (sp.match == prev_match && !out.empty()) out.back().e = sp.e;
        else out.push_back(sp);
        prev_match = sp.match;
      }
      return out;
  }
  return all;
}

// Applies split_spans to every piece; at_start survives only on a piece that starts at byte 0.
template <class Finder>
void split_pieces(std::vector<Piece>& pieces, Finder&& find, SplitBehavior how, bool invert) {
  std::vector<Piece> out;
  out.reserve(pieces.size());
  for (auto& p : pieces)
    for (const Span& sp : split_spans(p.text, find(p.text), how, invert))
      out.push_back({p.text.substr(sp.b, sp.e - sp.b), p.at_start && sp.b == 0});
  pieces.swap(out);
}

// Each character for which pred holds, as one match (huggingface's Pattern for Fn(char)).
template <class Pred>
std::vector<std::pair<size_t, size_t>> char_matches(const std::string& s, Pred&& pred) {
  std::vector<std::pair<size_t, size_t>> m;
  for (size_t i = 0; i < s.size();) {
    const size_t b = i;
    if (pred(text::next_codepoint(s, i))) m.emplace_back(b, i);
  }
  return m;
}

}  // namespace

std::vector<std::pair<size_t, size_t>> Pattern::find_all(const std::string& text) const {
  if (re) return re->find_all(text);
  std::vector<std::pair<size_t, size_t>> m;
  for (size_t at = text.find(literal); at != std::string::npos;
       at = text.find(literal, at + literal.size()))
    m.emplace_back(at, at + literal.size());
  return m;
}

// ---- normalizers ---------------------------------------------------------------------------

Normalizer parse_normalizer(const json& j, const JsonAt& at) {
  Normalizer n;
  const std::string t = type_of(j, at);
  if (t == "NFC") n.kind = NormKind::NFC;
  else if (t == "NFD") n.kind = NormKind::NFD;
  else if (t == "NFKC") n.kind = NormKind::NFKC;
  else if (t == "NFKD") n.kind = NormKind::NFKD;
  else if (t == "Lowercase") n.kind = NormKind::Lowercase;
  else if (t == "Prepend") {
    n.kind = NormKind::Prepend;
    n.content = str_of(j, "prepend", at);
  } else if (t == "Replace") {
    n.kind = NormKind::Replace;
    n.pattern = parse_pattern(need(j, "pattern", at), at.at("pattern"));
    n.content = str_of(j, "content", at);
  } else if (t == "Strip") {
    n.kind = NormKind::Strip;
    n.left = bool_of(j, "strip_left", at, false);
    n.right = bool_of(j, "strip_right", at, false);
  } else if (t == "Sequence") {
    const json& list = list_of(j, "normalizers", at);
    for (size_t i = 0; i < list.size(); ++i)
      n.children.push_back(parse_normalizer(list[i], at.at("normalizers").at(i)));
  } else {
    unsupported("normalizer", t, at, "NFC NFD NFKC NFKD Lowercase Prepend Replace Strip Sequence");
  }
  return n;
}

std::string Normalizer::apply(const std::string& s) const {
  switch (kind) {
    case NormKind::NFC: return text::normalize(s, text::NormalForm::NFC);
    case NormKind::NFD: return text::normalize(s, text::NormalForm::NFD);
    case NormKind::NFKC: return text::normalize(s, text::NormalForm::NFKC);
    case NormKind::NFKD: return text::normalize(s, text::NormalForm::NFKD);
    case NormKind::Lowercase: return text::lowercase(s);
    case NormKind::Prepend: return s.empty() ? s : content + s;
    case NormKind::Replace: return replace_all(s, pattern, content);
    case NormKind::Strip: {
      size_t b = 0, e = s.size();
      auto ws_at = [&](size_t i) { size_t k = i; return text::is_whitespace(text::next_codepoint(s, k)); };
      while (left && b < e && ws_at(b)) b += text::utf8_len(static_cast<unsigned char>(s[b]));
      while (right && e > b) {
        size_t k = e - 1;
        while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        if (!ws_at(k)) break;
        e = k;
      }
      return s.substr(b, e - b);
    }
    case NormKind::Sequence: {
      std::string r = s;
      for (const auto& c : children) r = c.apply(r);
      return r;
    }
  }
  return s;
}

// ---- pre-tokenizers ------------------------------------------------------------------------

PreTokenizer parse_pre_tokenizer(const json& j, const JsonAt& at) {
  PreTokenizer p;
  const std::string t = type_of(j, at);
  if (t == "Split") {
    p.kind = PreKind::Split;
    p.pattern = parse_pattern(need(j, "pattern", at), at.at("pattern"));
    static constexpr EnumNames<SplitBehavior, 5> names{
        {{SplitBehavior::Removed, "Removed"}, {SplitBehavior::Isolated, "Isolated"},
         {SplitBehavior::MergedWithPrevious, "MergedWithPrevious"},
         {SplitBehavior::MergedWithNext, "MergedWithNext"},
         {SplitBehavior::Contiguous, "Contiguous"}}};
    p.behavior = names.parse(str_of(j, "behavior", at), at.at("behavior").str().c_str());
    p.invert = bool_of(j, "invert", at, false);
  } else if (t == "ByteLevel") {
    p.kind = PreKind::ByteLevel;
    p.add_prefix_space = bool_of(j, "add_prefix_space", at, true);
    p.use_regex = bool_of(j, "use_regex", at, true);
    if (p.use_regex) p.pattern.re = std::make_shared<Regex>(kGpt2Pattern, at.str() + " (ByteLevel)");
  } else if (t == "Metaspace") {
    p.kind = PreKind::Metaspace;
    p.replacement = str_of(j, "replacement", at);
    p.prepend_scheme = parse_scheme(j, at);
    p.split = bool_of(j, "split", at, true);
  } else if (t == "Digits") {
    p.kind = PreKind::Digits;
    p.individual_digits = bool_of(j, "individual_digits", at, false);
  } else if (t == "WhitespaceSplit") {
    p.kind = PreKind::WhitespaceSplit;
  } else if (t == "Sequence") {
    const json& list = list_of(j, "pretokenizers", at);
    for (size_t i = 0; i < list.size(); ++i)
      p.children.push_back(parse_pre_tokenizer(list[i], at.at("pretokenizers").at(i)));
  } else {
    unsupported("pre_tokenizer", t, at, "Split ByteLevel Metaspace Digits WhitespaceSplit Sequence");
  }
  return p;
}

bool uses_byte_level(const PreTokenizer& p) {
  if (p.kind == PreKind::ByteLevel) return true;
  for (const auto& c : p.children)
    if (uses_byte_level(c)) return true;
  return false;
}

void PreTokenizer::apply(std::vector<Piece>& pieces) const {
  switch (kind) {
    case PreKind::Split:
      split_pieces(pieces, [&](const std::string& s) { return pattern.find_all(s); }, behavior,
                   invert);
      return;
    case PreKind::ByteLevel: {
      if (add_prefix_space)
        for (auto& p : pieces)
          if (p.text.empty() || p.text[0] != ' ') p.text.insert(0, 1, ' ');
      if (use_regex)
        split_pieces(pieces, [&](const std::string& s) { return pattern.find_all(s); },
                     SplitBehavior::Isolated, false);
      const auto& chars = text::byte_level_chars();
      for (auto& p : pieces) {
        std::string mapped;
        mapped.reserve(p.text.size() * 2);
        for (unsigned char c : p.text) mapped += chars[c];
        p.text.swap(mapped);
      }
      return;
    }
    case PreKind::Metaspace: {
      const Pattern space{" ", nullptr};
      for (auto& p : pieces) {
        p.text = replace_all(p.text, space, replacement);
        const bool has = p.text.compare(0, replacement.size(), replacement) == 0;
        if (!has && (prepend_scheme == PrependScheme::Always ||
                     (prepend_scheme == PrependScheme::First && p.at_start)))
          p.text.insert(0, replacement);
      }
      if (split) {
        const Pattern rep{replacement, nullptr};
        split_pieces(pieces, [&](const std::string& s) { return rep.find_all(s); },
                     SplitBehavior::MergedWithNext, false);
      }
      return;
    }
    case PreKind::Digits:
      split_pieces(pieces, [](const std::string& s) { return char_matches(s, text::is_numeric); },
                   individual_digits ? SplitBehavior::Isolated : SplitBehavior::Contiguous, false);
      return;
    case PreKind::WhitespaceSplit:
      split_pieces(pieces, [](const std::string& s) { return char_matches(s, text::is_whitespace); },
                   SplitBehavior::Removed, false);
      return;
    case PreKind::Sequence:
      for (const auto& c : children) c.apply(pieces);
      return;
  }
}

// ---- post-processors -----------------------------------------------------------------------

namespace {

void parse_post_into(const json& j, const JsonAt& at, PostProcessor& out) {
  const std::string t = type_of(j, at);
  if (t == "ByteLevel") return;  // offsets only
  if (t == "Sequence") {
    const json& list = list_of(j, "processors", at);
    for (size_t i = 0; i < list.size(); ++i) parse_post_into(list[i], at.at("processors").at(i), out);
    return;
  }
  RLHF_CHECK(out.single.empty(), "{}: a second template-adding post-processor ('{}') is not "
             "supported", at.str(), t);
  if (t == "TemplateProcessing") {
    const json& single = list_of(j, "single", at);
    const json& specials = need(j, "special_tokens", at);
    for (size_t i = 0; i < single.size(); ++i) {
      const JsonAt ai = at.at("single").at(i);
      if (single[i].contains("Sequence")) {
        const std::string id = str_of(single[i]["Sequence"], "id", ai.at("Sequence"));
        RLHF_CHECK(id == "A", "{}: a single-sequence template may only use sequence A, got '{}'",
                   ai.str(), id);
        out.single.emplace_back();
        out.has_sequence = true;
      } else if (single[i].contains("SpecialToken")) {
        const std::string name = str_of(single[i]["SpecialToken"], "id", ai.at("SpecialToken"));
        RLHF_CHECK(specials.contains(name), "{}: special token '{}' is not in special_tokens",
                   ai.str(), name);
        const json& ids = list_of(specials[name], "ids", at.at("special_tokens").at(name));
        out.single.push_back(ids.get<std::vector<int32_t>>());
      } else {
        throw Error(fmt::format("{}: expected SpecialToken or Sequence, got {}", ai.str(),
                                single[i].dump()));
      }
    }
  } else if (t == "RobertaProcessing" || t == "BertProcessing") {
    const json& cls = need(j, "cls", at);
    const json& sep = need(j, "sep", at);
    RLHF_CHECK(cls.is_array() && cls.size() == 2 && sep.is_array() && sep.size() == 2,
               "{}: cls and sep must be [token, id]", at.str());
    out.single = {{cls[1].get<int32_t>()}, {}, {sep[1].get<int32_t>()}};
    out.has_sequence = true;
  } else {
    unsupported("post_processor", t, at,
                "TemplateProcessing ByteLevel RobertaProcessing BertProcessing Sequence");
  }
}

}  // namespace

PostProcessor parse_post_processor(const json& j, const JsonAt& at) {
  PostProcessor p;
  if (!j.is_null()) parse_post_into(j, at, p);
  return p;
}

std::vector<int32_t> PostProcessor::apply(const std::vector<int32_t>& ids) const {
  if (single.empty()) return ids;
  std::vector<int32_t> out;
  out.reserve(ids.size() + 4);
  for (const auto& item : single)
    if (item.empty()) out.insert(out.end(), ids.begin(), ids.end());
    else out.insert(out.end(), item.begin(), item.end());
  return out;
}

// ---- decoders ------------------------------------------------------------------------------

Decoder parse_decoder(const json& j, const JsonAt& at) {
  Decoder d;
  const std::string t = type_of(j, at);
  if (t == "ByteLevel") d.kind = DecKind::ByteLevel;
  else if (t == "ByteFallback") d.kind = DecKind::ByteFallback;
  else if (t == "Fuse") d.kind = DecKind::Fuse;
  else if (t == "Metaspace") {
    d.kind = DecKind::Metaspace;
    d.replacement = str_of(j, "replacement", at);
    d.prepend_scheme = parse_scheme(j, at);
  } else if (t == "Replace") {
    d.kind = DecKind::Replace;
    d.pattern = parse_pattern(need(j, "pattern", at), at.at("pattern"));
    d.content = str_of(j, "content", at);
  } else if (t == "Strip") {
    d.kind = DecKind::Strip;
    d.content = str_of(j, "content", at);
    d.start = need(j, "start", at).get<int>();
    d.stop = need(j, "stop", at).get<int>();
  } else if (t == "Sequence") {
    const json& list = list_of(j, "decoders", at);
    for (size_t i = 0; i < list.size(); ++i)
      d.children.push_back(parse_decoder(list[i], at.at("decoders").at(i)));
  } else {
    unsupported("decoder", t, at, "ByteLevel Metaspace Replace ByteFallback Fuse Strip Sequence");
  }
  return d;
}

namespace {

// "<0xNN>" -> NN, else -1.
int fallback_byte(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
  const int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string byte_level_bytes(const std::string& tok) {
  std::string raw;
  for (size_t i = 0; i < tok.size();) {
    const int b = text::byte_of_codepoint(text::next_codepoint(tok, i));
    if (b < 0) return tok;  // a character outside the alphabet: the token as it is
    raw.push_back(static_cast<char>(b));
  }
  return raw;
}

}  // namespace

std::vector<std::string> Decoder::apply(std::vector<std::string> tokens) const {
  switch (kind) {
    case DecKind::ByteLevel: {
      std::string all;
      for (const auto& t : tokens) all += byte_level_bytes(t);
      return {all};
    }
    case DecKind::Fuse: {
      std::string all;
      for (const auto& t : tokens) all += t;
      return {all};
    }
    case DecKind::ByteFallback: {
      std::vector<std::string> out;
      std::string bytes;
      for (auto& t : tokens) {
        const int b = fallback_byte(t);
        if (b >= 0) {
          bytes.push_back(static_cast<char>(b));
          continue;
        }
        if (!bytes.empty()) out.push_back(std::move(bytes));
        bytes.clear();
        out.push_back(std::move(t));
      }
      if (!bytes.empty()) out.push_back(std::move(bytes));
      return out;
    }
    case DecKind::Replace:
      for (auto& t : tokens) t = replace_all(t, pattern, content);
      return tokens;
    case DecKind::Metaspace: {
      const Pattern rep{replacement, nullptr};
      for (size_t i = 0; i < tokens.size(); ++i) {
        const bool drop = i == 0 && prepend_scheme != PrependScheme::Never;
        tokens[i] = replace_all(tokens[i], rep, drop ? "" : " ");
      }
      return tokens;
    }
    case DecKind::Strip:
      for (auto& t : tokens) {
        size_t b = 0, e = t.size();
        for (int k = 0; k < start && t.compare(b, content.size(), content) == 0; ++k)
          b += content.size();
        for (int k = 0; k < stop && e >= b + content.size() &&
                        t.compare(e - content.size(), content.size(), content) == 0; ++k)
          e -= content.size();
        t = t.substr(b, e - b);
      }
      return tokens;
    case DecKind::Sequence:
      for (const auto& c : children) tokens = c.apply(std::move(tokens));
      return tokens;
  }
  return tokens;
}

}  // namespace rlhf::hf
