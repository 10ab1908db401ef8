#include "tools/prep/common.h"

#include <zlib.h>

#include <filesystem>

#include "common/core/check.h"
#include "common/core/fs.h"

namespace rlhf {

namespace fs = std::filesystem;

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

static bool gzip_magic(const std::string& s, size_t at) {
  return s.size() >= at + 2 && static_cast<unsigned char>(s[at]) == 0x1f &&
         static_cast<unsigned char>(s[at + 1]) == 0x8b;
}

// Inflates the gzip member starting at raw[at] into out; returns the offset just past it.
static size_t inflate_member(const std::string& path, const std::string& raw, size_t at,
                             std::string& out) {
  z_stream z{};
  RLHF_CHECK(inflateInit2(&z, 16 + MAX_WBITS) == Z_OK, "cannot read '{}': zlib init failed", path);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data() + at));
  z.avail_in = static_cast<uInt>(raw.size() - at);  // input files are < 4 GiB per member read
  char buf[1 << 16];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof(buf);
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - z.avail_out);
    if (rc == Z_OK) continue;
    if (rc == Z_STREAM_END) break;
    const std::string msg = z.msg ? z.msg : (rc == Z_BUF_ERROR ? "unexpected end of file" : "");
    const size_t pos = at + z.total_in;
    inflateEnd(&z);
    throw Error(fmt::format("cannot read '{}': gzip stream is truncated or corrupt at byte {}: {}",
                            path, pos, msg.empty() ? fmt::format("zlib code {}", rc) : msg));
  }
  const size_t next = at + z.total_in;
  inflateEnd(&z);
  return next;
}

std::string read_input_file(const std::string& path, PrepReport& rep) {
  RLHF_CHECK(fs::exists(path) && !fs::is_directory(path), "cannot open input '{}': file not found, "
             "unreadable or a directory", path);
  const std::string raw = read_file_bytes(path);
  RLHF_CHECK(raw.size() < (size_t{1} << 32) || !gzip_magic(raw, 0),
             "cannot read '{}': gzip inputs over 4 GiB are not supported; decompress it first", path);
  if (!gzip_magic(raw, 0)) return raw;
  std::string out;
  size_t at = 0;
  while (at < raw.size()) {
    if (!gzip_magic(raw, at)) {
      rep.input_problem("trailing_data_after_gzip", path,
                        fmt::format("{} bytes after the gzip stream (from byte {}) are not gzip "
                                    "data and were ignored", raw.size() - at, at));
      break;
    }
    at = inflate_member(path, raw, at, out);
  }
  return out;
}

void for_each_line(const std::string& path, PrepReport& rep,
                   const std::function<void(int64_t, const std::string&)>& fn) {
  std::string text = read_input_file(path, rep);
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
