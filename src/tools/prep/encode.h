// encode.h — `rlhf_prep encode` / `rlhf_prep decode`, the tokenizer on the command line.
//   encode: one JSON value per input line, a string or an object {"text": "..."}; one JSON array
//           of ids per output line, e.g. "Hello world" -> [15496,995]. Special tokens (BOS, the
//           tokenizer's template) only with add_special_tokens. Lines are encoded on `threads`
//           threads (0 = all cores) in blocks; the output keeps the input order.
//   decode: one JSON array of ids per line -> one JSON string per line (special tokens dropped).
// Called by src/tools/prep/main.cpp; testable with string streams.
// Errors: throws rlhf::Error for a bad tokenizer spec or a bad line (naming the 1-based line
// number and what was expected). Output already written for earlier blocks stays written.
#pragma once
#include <iosfwd>
#include <string>

namespace rlhf {

struct EncodeOptions {
  std::string tokenizer = "byte";  // as load_tokenizer()
  bool add_special_tokens = false;
  int threads = 0;
};

// Both return 0 on success (throw rlhf::Error otherwise).
int run_encode(const EncodeOptions& o, std::istream& in, std::ostream& out);
int run_decode(const std::string& tokenizer_spec, std::istream& in, std::ostream& out);

}  // namespace rlhf
