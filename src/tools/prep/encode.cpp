// encode.cpp — see encode.h.
#include "tools/prep/encode.h"

#include <istream>
#include <ostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/core/check.h"
#include "common/tokenizer/tokenizer.h"

namespace rlhf {

int run_encode(const std::string& tokenizer_spec, std::istream& in, std::ostream& out) {
  const auto tok = load_tokenizer(tokenizer_spec);
  std::string line;
  for (size_t line_no = 1; std::getline(in, line); ++line_no) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("encode: input line {} is not valid JSON (expected one JSON string "
                              "per line): {}",
                              line_no, e.what()));
    }
    RLHF_CHECK(j.is_string(), "encode: input line {} is a JSON {}, expected a JSON string",
               line_no, j.type_name());
    out << nlohmann::json(tok->encode(j.get<std::string>())).dump() << '\n';
  }
  RLHF_CHECK(!in.bad(), "encode: error reading the input");
  out.flush();
  return 0;
}

}  // namespace rlhf
