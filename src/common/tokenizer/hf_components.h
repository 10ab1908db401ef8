// hf_components.h — the pipeline stages of a Hugging Face tokenizer.json, parsed once into
// enums and plain data: normalizers, pre-tokenizers, post-processors and decoders. Supported:
//   normalizer     NFC NFD NFKC NFKD Lowercase Prepend Replace Strip Sequence
//   pre_tokenizer  Split (String|Regex, every behavior, invert) ByteLevel (add_prefix_space,
//                  use_regex) Metaspace (replacement, prepend_scheme, split) Digits
//                  WhitespaceSplit Sequence
//   post_processor TemplateProcessing (single) ByteLevel RobertaProcessing BertProcessing Sequence
//   decoder        ByteLevel Metaspace Replace ByteFallback Fuse Strip Sequence
// Anything else (or a bad field) throws rlhf::Error naming the file, the JSON path and the type —
// never a silent approximation. Semantics follow huggingface/tokenizers; where they lose bytes
// (ByteFallback turning invalid UTF-8 into U+FFFD) ours keeps the raw bytes.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/tokenizer/regex.h"

namespace rlhf::hf {

// Where a JSON value sits, for errors: "<file>: <path>".
struct JsonAt {
  std::string file, path;
  JsonAt at(const std::string& key) const { return {file, path.empty() ? key : path + "." + key}; }
  JsonAt at(size_t i) const { return {file, path + "[" + std::to_string(i) + "]"}; }
  std::string str() const { return file + ": " + path; }
};

// A stretch of text on its way to the model; at_start: it begins at offset 0 of the input.
struct Piece {
  std::string text;
  bool at_start = false;
};

// A String or Regex pattern ({"String": s} | {"Regex": r}).
struct Pattern {
  std::string literal;           // when re is null
  std::shared_ptr<Regex> re;
  std::vector<std::pair<size_t, size_t>> find_all(const std::string& text) const;
};

enum class NormKind { NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence };
struct Normalizer {
  NormKind kind = NormKind::Sequence;
  std::string content;  // Prepend: prepend; Replace: content
  Pattern pattern;      // Replace
  bool left = false, right = false;  // Strip
  std::vector<Normalizer> children;  // Sequence
  std::string apply(const std::string& s) const;
};
Normalizer parse_normalizer(const nlohmann::json& j, const JsonAt& at);

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
enum class PrependScheme { Always, First, Never };
enum class PreKind { Split, ByteLevel, Metaspace, Digits, WhitespaceSplit, Sequence };
struct PreTokenizer {
  PreKind kind = PreKind::Sequence;
  Pattern pattern;  // Split; ByteLevel with use_regex (GPT-2's)
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  bool add_prefix_space = false, use_regex = false;        // ByteLevel
  std::string replacement;                                 // Metaspace
  PrependScheme prepend_scheme = PrependScheme::Always;    // Metaspace
  bool split = true;                                       // Metaspace
  bool individual_digits = false;                          // Digits
  std::vector<PreTokenizer> children;                      // Sequence
  void apply(std::vector<Piece>& pieces) const;
};
PreTokenizer parse_pre_tokenizer(const nlohmann::json& j, const JsonAt& at);
bool uses_byte_level(const PreTokenizer& p);  // a ByteLevel stage anywhere in the tree

// Post-processing of one sequence when special tokens are requested.
struct PostProcessor {
  // Each item: ids to insert, or (empty ids) the sequence itself.
  std::vector<std::vector<int32_t>> single;
  bool has_sequence = false;
  std::vector<int32_t> apply(const std::vector<int32_t>& ids) const;
};
PostProcessor parse_post_processor(const nlohmann::json& j, const JsonAt& at);

enum class DecKind { ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence };
struct Decoder {
  DecKind kind = DecKind::Sequence;
  std::string replacement;  // Metaspace
  PrependScheme prepend_scheme = PrependScheme::Always;
  Pattern pattern;          // Replace
  std::string content;      // Replace: content; Strip: the character
  int start = 0, stop = 0;  // Strip
  std::vector<Decoder> children;
  // tokens in, tokens out (huggingface's decode_chain); the caller concatenates the result.
  std::vector<std::string> apply(std::vector<std::string> tokens) const;
};
Decoder parse_decoder(const nlohmann::json& j, const JsonAt& at);

}  // namespace rlhf::hf
