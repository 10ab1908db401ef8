// encode.h — `rlhf_prep encode --tokenizer SPEC`: tokenizes one JSON string per input line
// and prints one JSON array of ids per line (no BOS/EOS added), e.g. "Hello world" -> [15496,995].
// Called by src/tools/prep/main.cpp; testable with string streams.
// Errors: throws rlhf::Error for a bad tokenizer spec or a line that is not a JSON string (naming
// the 1-based line number). Output already written for earlier lines stays written.
#pragma once
#include <iosfwd>
#include <string>

namespace rlhf {

// Returns 0 on success (throws rlhf::Error otherwise). tokenizer_spec: as load_tokenizer().
int run_encode(const std::string& tokenizer_spec, std::istream& in, std::ostream& out);

}  // namespace rlhf
