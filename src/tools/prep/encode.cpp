// encode.cpp — see encode.h.
#include "tools/prep/encode.h"

#include <algorithm>
#include <istream>
#include <ostream>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/core/check.h"
#include "common/tokenizer/tokenizer.h"

namespace rlhf {
namespace {

constexpr size_t kBlockLines = 4096;

nlohmann::json parse_line(const std::string& line, size_t line_no, const char* cmd) {
  try {
    return nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: input line {} is not valid JSON: {}", cmd, line_no, e.what()));
  }
}

std::string text_of(const std::string& line, size_t line_no) {
  const nlohmann::json j = parse_line(line, line_no, "encode");
  if (j.is_string()) return j.get<std::string>();
  RLHF_CHECK(j.is_object() && j.contains("text") && j["text"].is_string(),
             "encode: input line {} is a JSON {}, expected a string or an object with a string "
             "\"text\"",
             line_no, j.type_name());
  return j["text"].get<std::string>();
}

// Runs f(i) for i in [0, n) on up to `threads` threads; the first exception is rethrown.
template <class F>
void parallel_for(size_t n, int threads, F&& f) {
  const size_t t = std::max<size_t>(1, std::min<size_t>(threads, n));
  std::vector<std::exception_ptr> errors(t);
  std::vector<std::thread> pool;
  for (size_t w = 0; w < t; ++w)
    pool.emplace_back([&, w] {
      try {
        for (size_t i = w; i < n; i += t) f(i);
      } catch (...) {
        errors[w] = std::current_exception();
      }
    });
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace

int run_encode(const EncodeOptions& o, std::istream& in, std::ostream& out) {
  const auto tok = load_tokenizer(o.tokenizer);
  const int threads = o.threads > 0 ? o.threads
                                    : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  std::vector<std::string> lines, encoded;
  size_t first_line = 1;
  std::string line;
  for (bool more = true; more;) {
    lines.clear();
    while (lines.size() < kBlockLines && (more = static_cast<bool>(std::getline(in, line))))
      lines.push_back(std::move(line));
    encoded.assign(lines.size(), std::string());
    parallel_for(lines.size(), lines.size() < 64 ? 1 : threads, [&](size_t i) {
      const std::string t = text_of(lines[i], first_line + i);
      encoded[i] = nlohmann::json(o.add_special_tokens ? tok->encode_with_special_tokens(t)
                                                       : tok->encode(t))
                       .dump();
    });
    for (const auto& e : encoded) out << e << '\n';
    first_line += lines.size();
  }
  RLHF_CHECK(!in.bad(), "encode: error reading the input");
  out.flush();
  return 0;
}

int run_decode(const std::string& tokenizer_spec, std::istream& in, std::ostream& out) {
  const auto tok = load_tokenizer(tokenizer_spec);
  std::string line;
  for (size_t line_no = 1; std::getline(in, line); ++line_no) {
    const nlohmann::json j = parse_line(line, line_no, "decode");
    RLHF_CHECK(j.is_array() && std::all_of(j.begin(), j.end(),
                                           [](const auto& v) { return v.is_number_integer(); }),
               "decode: input line {} is not a JSON array of integer ids", line_no);
    // Raw bytes may not be valid UTF-8 (a cut through a character): replace, never throw.
    out << nlohmann::json(tok->decode(j.get<std::vector<int32_t>>()))
               .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
        << '\n';
  }
  RLHF_CHECK(!in.bad(), "decode: error reading the input");
  out.flush();
  return 0;
}

}  // namespace rlhf
