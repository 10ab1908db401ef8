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

namespace {

namespace fs = std::filesystem;

// (source, name in the copy) for every file that defines the tokenizer at `spec`.
std::vector<std::pair<fs::path, std::string>> defining_files(const fs::path& spec) {
  std::vector<std::pair<fs::path, std::string>> out;
  std::error_code ec;
  const bool folder = fs::is_directory(spec, ec);
  const fs::path dir = folder ? spec : spec.parent_path();
  auto configs = [&] {
    for (const char* n : {"tokenizer_config.json", "generation_config.json", "special_tokens_map.json"})
      if (fs::exists(dir / n, ec)) out.emplace_back(dir / n, n);
  };
  if (folder) {
    if (fs::exists(spec / "tokenizer.json", ec)) {
      out.emplace_back(spec / "tokenizer.json", "tokenizer.json");
      configs();
    } else if (fs::exists(spec / "tokenizer.model", ec)) {
      out.emplace_back(spec / "tokenizer.model", "tokenizer.model");
      configs();
    } else {
      for (const char* n : {"vocab.json", "merges.txt"}) out.emplace_back(spec / n, n);
    }
  } else if (spec.extension() == ".json") {
    out.emplace_back(spec, "tokenizer.json");
    configs();
  } else if (spec.extension() == ".model") {
    out.emplace_back(spec, "tokenizer.model");
    configs();
  } else {
    out.emplace_back(spec, spec.filename().string());
  }
  return out;
}

}  // namespace

std::string copy_tokenizer(const std::string& spec, const std::string& dir, bool flat) {
  if (spec == "byte") return spec;
  std::error_code ec;
  const fs::path src = fs::absolute(spec, ec).lexically_normal();
  const fs::path dst = (flat ? fs::absolute(dir, ec) : fs::absolute(dir, ec) / "tokenizer").lexically_normal();
  const auto files = defining_files(src);
  const bool is_bin = files.size() == 1 && fs::is_regular_file(src, ec) &&
                      src.extension() != ".json" && src.extension() != ".model";
  const std::string sub = flat ? "." : "tokenizer";
  const std::string rel = is_bin ? sub + "/" + files[0].second : sub;
  if ((fs::is_directory(src, ec) ? src : src.parent_path()) == dst) return rel;  // already ours
  fs::create_directories(dst, ec);
  RLHF_CHECK(!ec, "cannot create the tokenizer folder '{}': {}", dst.string(), ec.message());
  for (const auto& [from, name] : files) {
    fs::copy_file(from, dst / name, fs::copy_options::overwrite_existing, ec);
    RLHF_CHECK(!ec, "cannot copy tokenizer file '{}' to '{}': {}", from.string(),
               (dst / name).string(), ec.message());
  }
  return rel;
}

std::string resolve_tokenizer_spec(const std::string& spec, const std::string& dir) {
  if (spec == "byte" || spec.empty() || fs::path(spec).is_absolute()) return spec;
  return (fs::path(dir) / spec).lexically_normal().string();
}

}  // namespace rlhf
