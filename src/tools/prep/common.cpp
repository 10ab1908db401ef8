#include "tools/prep/common.h"

#include <zlib.h>

#include "common/core/check.h"

namespace rlhf {

SourceFormat parse_source_format(const std::string& s) { return kSourceFormatNames.parse(s, "--format"); }

const char* source_format_name(SourceFormat f) { return kSourceFormatNames.name(f); }

OverLength parse_over_length(const std::string& s) { return kOverLengthNames.parse(s, "--over-length"); }

void PrepReport::count(const std::string& key, const std::string& where, const std::string& problem) {
  if (strict_) throw Error(fmt::format("{}: {} (--strict)", where, problem));
  if (counts_[key]++ == 0) first_[key] = fmt::format("{}: {}", where, problem);
}

void PrepReport::skip(const std::string& reason, const std::string& where,
                      const std::string& problem) {
  count("skipped_" + reason, where, problem);
}

void PrepReport::drop_response(const std::string& reason, const std::string& where,
                               const std::string& problem) {
  count("dropped_response_" + reason, where, problem);
}

int64_t PrepReport::get(const std::string& key) const {
  auto it = counts_.find(key);
  return it == counts_.end() ? 0 : it->second;
}

std::string PrepReport::summary() const {
  std::string s;
  for (const auto& [k, v] : counts_) {
    auto it = first_.find(k);
    s += it == first_.end() ? fmt::format("  {} = {}\n", k, v)
                            : fmt::format("  {} = {}   (first: {})\n", k, v, it->second);
  }
  return s;
}

std::string read_input_file(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  RLHF_CHECK(f != nullptr, "cannot open input '{}': file not found or unreadable", path);
  std::string out;
  char buf[1 << 16];
  while (true) {
    int n = gzread(f, buf, sizeof(buf));
    if (n < 0) {
      int err = 0;
      std::string msg = gzerror(f, &err);
      gzclose(f);
      throw Error(fmt::format("cannot read '{}': {} (truncated gzip?)", path, msg));
    }
    if (n == 0) break;
    out.append(buf, n);
  }
  int rc = gzclose(f);
  RLHF_CHECK(rc == Z_OK, "cannot read '{}': gzip stream is truncated or corrupt (zlib code {})",
             path, rc);
  return out;
}

void for_each_line(const std::string& path,
                   const std::function<void(int64_t, const std::string&)>& fn) {
  std::string text = read_input_file(path);
  size_t pos = 0;
  int64_t line = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string::npos ? text.size() : nl;
    std::string l = text.substr(pos, end - pos);
    if (!l.empty() && l.back() == '\r') l.pop_back();
    fn(++line, l);
    pos = end + 1;
  }
}

bool valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned c = p[i];
    size_t len;
    uint32_t cp;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // overlong forms, surrogates, beyond U+10FFFF
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
      return false;
    i += len;
  }
  return true;
}

std::string where(const std::string& file, int64_t line) { return fmt::format("{}:{}", file, line); }

static bool check_text(PrepReport& rep, const std::string& field,
                       const std::string& text, const std::string& where, bool in_group) {
  auto bad = [&](const std::string& reason, const std::string& problem) {
    if (in_group) rep.drop_response(reason, where, problem);
    else rep.skip(reason, where, problem);
    return false;
  };
  if (text.empty()) return bad("empty_" + field, fmt::format("empty {}", field));
  if (!valid_utf8(text)) return bad("invalid_utf8", fmt::format("{} is not valid UTF-8", field));
  return true;
}

bool tokenize_prompt(const Tokenizer& tok, const PrepOptions& o, PrepReport& rep,
                     const std::string& text, const std::string& where,
                     std::vector<int32_t>* ids) {
  if (!check_text(rep, "prompt", text, where, false)) return false;
  *ids = tok.encode(text);
  return limit_prompt(o, rep, where, ids);
}

bool limit_prompt(const PrepOptions& o, PrepReport& rep, const std::string& where,
                  std::vector<int32_t>* ids) {
  int64_t n = static_cast<int64_t>(ids->size());
  if (o.max_prompt_tokens > 0 && n > o.max_prompt_tokens) {
    if (o.over_length == OverLength::Skip) {
      rep.skip("prompt_too_long", where,
               fmt::format("prompt has {} tokens > --max-prompt-tokens {}", n, o.max_prompt_tokens));
      return false;
    }
    ids->erase(ids->begin(), ids->begin() + (n - o.max_prompt_tokens));  // keep the END
    rep.add("truncated_prompt");
  }
  return true;
}

bool tokenize_response(const Tokenizer& tok, const PrepOptions& o, PrepReport& rep,
                       const std::string& text, const std::string& where, bool in_group,
                       std::vector<int32_t>* ids) {
  if (!check_text(rep, "response", text, where, in_group)) return false;
  *ids = tok.encode(text);
  return limit_response(o, rep, where, in_group, ids);
}

bool limit_response(const PrepOptions& o, PrepReport& rep, const std::string& where, bool in_group,
                    std::vector<int32_t>* ids) {
  int64_t n = static_cast<int64_t>(ids->size());
  if (o.max_response_tokens > 0 && n > o.max_response_tokens) {
    if (o.over_length == OverLength::Skip) {
      std::string problem = fmt::format("response has {} tokens > --max-response-tokens {}", n,
                                        o.max_response_tokens);
      if (in_group) rep.drop_response("response_too_long", where, problem);
      else rep.skip("response_too_long", where, problem);
      return false;
    }
    ids->resize(o.max_response_tokens);  // keep the START
    rep.add("truncated_response");
  }
  return true;
}

DatasetMeta make_meta(const Tokenizer& tok, const std::string& source, const PrepReport& rep) {
  DatasetMeta m;
  m.tokenizer = tok.identity();
  m.tokenizer_spec = tok.spec();
  m.vocab_size = tok.vocab_size();
  m.source = source;
  m.report = rep.counts();
  return m;
}

}  // namespace rlhf
