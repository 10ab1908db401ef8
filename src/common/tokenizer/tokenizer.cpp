// tokenizer.cpp — the byte tokenizer and load_tokenizer(); GPT-2 and llama2.c kinds live in
// gpt2.cpp / llama2c.cpp. Contract: see tokenizer.h.
#include "common/tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

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

namespace {

namespace fs = std::filesystem;

enum class SpecKind { Hf, SentencePiece, Gpt2, Llama2c };

// Which kind a path names: the one rule load_tokenizer and copy_tokenizer share. A folder is
// tokenizer.json, else tokenizer.model, else vocab.json + merges.txt; a file goes by extension.
SpecKind kind_of(const fs::path& p) {
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "tokenizer.json", ec)) return SpecKind::Hf;
    if (fs::exists(p / "tokenizer.model", ec)) return SpecKind::SentencePiece;
    if (fs::exists(p / "vocab.json", ec)) return SpecKind::Gpt2;
    throw Error(fmt::format("tokenizer folder '{}' holds none of tokenizer.json, tokenizer.model, "
                            "vocab.json + merges.txt",
                            p.string()));
  }
  if (p.extension() == ".json") return SpecKind::Hf;
  if (p.extension() == ".model") return SpecKind::SentencePiece;
  return SpecKind::Llama2c;
}

// (source, name in the copy) for every file that defines the tokenizer of kind k at `spec`.
std::vector<std::pair<fs::path, std::string>> defining_files(const fs::path& spec, SpecKind k) {
  std::vector<std::pair<fs::path, std::string>> out;
  std::error_code ec;
  const bool folder = fs::is_directory(spec, ec);
  const fs::path dir = folder ? spec : spec.parent_path();
  auto main_and_configs = [&](const char* name) {
    out.emplace_back(folder ? spec / name : spec, name);
    for (const char* n : {"tokenizer_config.json", "generation_config.json", "special_tokens_map.json"})
      if (fs::exists(dir / n, ec)) out.emplace_back(dir / n, n);
  };
  switch (k) {
    case SpecKind::Hf: main_and_configs("tokenizer.json"); break;
    case SpecKind::SentencePiece: main_and_configs("tokenizer.model"); break;
    case SpecKind::Gpt2:
      for (const char* n : {"vocab.json", "merges.txt"}) out.emplace_back(spec / n, n);
      break;
    case SpecKind::Llama2c: out.emplace_back(spec, spec.filename().string()); break;
  }
  return out;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec) {
  if (spec == "byte") return std::make_unique<ByteTokenizer>();
  static const char* kExpected =
      "expected \"byte\", a folder holding tokenizer.json, tokenizer.model or vocab.json + "
      "merges.txt, a tokenizer.json file, a SentencePiece .model file or a llama2.c tokenizer .bin";
  RLHF_CHECK(!spec.empty(), "tokenizer spec is empty: {}", kExpected);
  std::error_code ec;
  const fs::path abs = fs::absolute(fs::path(spec), ec).lexically_normal();
  RLHF_CHECK(!ec, "tokenizer '{}': cannot make an absolute path: {}", spec, ec.message());
  RLHF_CHECK(fs::exists(abs, ec), "tokenizer '{}' ({}) does not exist: {}", spec, abs.string(),
             kExpected);
  // The readers check what they rely on; a JSON value of another type than expected anywhere
  // else in these files is still named here, with the file, instead of escaping as a raw
  // nlohmann error (found by tests/fuzz/fuzz_tokenizer).
  try {
    switch (kind_of(abs)) {
      case SpecKind::Hf: return HfTokenizer::load(abs.string());
      case SpecKind::SentencePiece: return SentencePieceTokenizer::load(abs.string());
      case SpecKind::Gpt2: return Gpt2Tokenizer::load(abs.string());
      case SpecKind::Llama2c: break;
    }
    return Llama2cTokenizer::load(abs.string());
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("tokenizer '{}': a field of its JSON files has an unexpected type or "
                            "value: {}", abs.string(), e.what()));
  }
}

std::string copy_tokenizer(const std::string& spec, const std::string& dir, bool flat) {
  if (spec == "byte") return spec;
  std::error_code ec;
  const fs::path src = fs::absolute(spec, ec).lexically_normal();
  const fs::path dst = (flat ? fs::absolute(dir, ec) : fs::absolute(dir, ec) / "tokenizer").lexically_normal();
  const SpecKind kind = kind_of(src);
  const auto files = defining_files(src, kind);
  const bool is_bin = kind == SpecKind::Llama2c;
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
