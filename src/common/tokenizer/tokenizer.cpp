// tokenizer.cpp — the byte tokenizer and load_tokenizer(); GPT-2 and llama2.c kinds live in
// gpt2.cpp / llama2c.cpp. Contract: see tokenizer.h.
#include "common/tokenizer/tokenizer.h"

#include <filesystem>
#include <system_error>

#include <fmt/format.h>

#include "common/core/check.h"

namespace rlhf {

namespace detail {
std::string hex16(uint64_t h) { return fmt::format("{:016x}", h); }
}  // namespace detail

// ---- byte ----------------------------------------------------------------------------------

std::vector<int32_t> ByteTokenizer::encode(const std::string& text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size());
  for (unsigned char c : text) ids.push_back(static_cast<int32_t>(c));
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  out.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    RLHF_CHECK(id >= 0 && id < vocab_size(),
               "byte tokenizer: decode got id {} at position {}, expected 0..{}", id, i,
               vocab_size() - 1);
    if (id < 256) out.push_back(static_cast<char>(static_cast<unsigned char>(id)));
    // 256..258 are BOS/EOS/PAD: dropped.
  }
  return out;
}

std::string ByteTokenizer::identity() const {
  // The "vocabulary" is fixed; hash a canonical description so the format matches other kinds.
  static const std::string desc = "byte:0-255,bos=256,eos=257,pad=258";
  return "byte:" + detail::hex16(detail::fnv1a64(desc.data(), desc.size()));
}

// ---- dispatch ------------------------------------------------------------------------------

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec) {
  if (spec == "byte") return std::make_unique<ByteTokenizer>();
  namespace fs = std::filesystem;
  static const char* kExpected =
      "expected \"byte\", a folder holding tokenizer.json, tokenizer.model or vocab.json + "
      "merges.txt, a tokenizer.json file, a SentencePiece .model file or a llama2.c tokenizer .bin";
  RLHF_CHECK(!spec.empty(), "tokenizer spec is empty: {}", kExpected);
  std::error_code ec;
  const fs::path abs = fs::absolute(fs::path(spec), ec).lexically_normal();
  RLHF_CHECK(!ec, "tokenizer '{}': cannot make an absolute path: {}", spec, ec.message());
  if (fs::is_directory(abs, ec)) {
    if (fs::exists(abs / "tokenizer.json", ec)) return HfTokenizer::load(abs.string());
    if (fs::exists(abs / "tokenizer.model", ec)) return SentencePieceTokenizer::load(abs.string());
    if (fs::exists(abs / "vocab.json", ec)) return Gpt2Tokenizer::load(abs.string());
    throw Error(fmt::format("tokenizer folder '{}' holds none of tokenizer.json, tokenizer.model, "
                            "vocab.json + merges.txt",
                            abs.string()));
  }
  if (fs::exists(abs, ec)) {
    if (abs.extension() == ".json") return HfTokenizer::load(abs.string());
    if (abs.extension() == ".model") return SentencePieceTokenizer::load(abs.string());
    return Llama2cTokenizer::load(abs.string());
  }
  throw Error(fmt::format("tokenizer '{}' ({}) does not exist: {}", spec, abs.string(), kExpected));
}

}  // namespace rlhf
