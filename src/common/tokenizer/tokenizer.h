// tokenizer.h — text <-> token ids. Five kinds:
//   byte          : ids 0..255 are bytes, 256 = BOS, 257 = EOS, 258 = PAD (vocab 259); no files.
//   gpt2          : byte-level BPE from a Hugging Face-style folder (vocab.json + merges.txt);
//                   EOS = BOS = PAD = <|endoftext|> (50256). Exact against the reference encoder.
//   llama2c       : llama2.c's tokenizer.bin (score-ordered merges, <0xNN> byte fallback);
//                   BOS = 1, EOS = 2, PAD = 0 (<unk>).
//   hf            : a Hugging Face tokenizer.json (+ tokenizer_config.json, generation_config.json
//                   beside it): Qwen, Llama 3, Mistral, SmolLM... (hf.cpp, hf_components.h).
//   sentencepiece : a SentencePiece tokenizer.model (Llama 2 / TinyLlama era), via libsentencepiece.
// encode() never adds special tokens; encode_with_special_tokens() applies the tokenizer's own
// template (Hugging Face's add_special_tokens=True: e.g. <|begin_of_text|> for Llama 3, <s> for
// Mistral, nothing for Qwen); callers that build sequences add BOS/EOS explicitly.
// bos_id() is -1 when the tokenizer has no BOS (Qwen). pad_id() is the tokenizer's PAD, else EOS
// (pad positions are always masked, so any id works; EOS keeps the vocabulary unchanged).
// stop_ids(): the ids that end a generation: EOS plus, for hf, every eos_token_id of
// generation_config.json beside tokenizer.json (Llama 3 instruct: <|eot_id|>, <|eom_id|>, ...).
// identity() = "<kind>:<16 hex digits of a hash of the vocabulary>" — stored in datasets and
// checkpoints so a mismatch is detected; spec() is what load_tokenizer() accepts to rebuild it.
// Thread-safety: const methods are safe to call concurrently (the GPT-2 BPE cache is locked).
// Invalid UTF-8 input never throws: byte encodes raw bytes; gpt2 splits the valid UTF-8 runs
// with its regex and gives every byte outside them its own single-byte token (so decode(encode(s))
// == s for any bytes); llama2c follows run.c (unknown sequences fall back to <0xNN> tokens).
// decode() throws rlhf::Error on an id outside [0, vocab_size()), naming the id and position.
// Implementation: tokenizer.cpp (byte, load_tokenizer), gpt2.cpp, llama2c.cpp, hf.cpp +
// hf_bpe.cpp + hf_components.cpp, sentencepiece.cpp; text.h and regex.h are shared helpers.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rlhf {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string kind() const = 0;  // "byte" | "gpt2" | "llama2c" | "hf" | "sentencepiece"
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  // encode() plus the tokenizer's special-token template (see above); byte/gpt2: = encode().
  virtual std::vector<int32_t> encode_with_special_tokens(const std::string& text) const {
    return encode(text);
  }
  // Decodes ids to text; special tokens (BOS/EOS/PAD) are dropped. llama2c: a piece right after
  // BOS loses its leading space and <0xNN> pieces become raw bytes (llama2.c's run.c rules).
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  // decode() that keeps the text of special added tokens ("<|im_end|>", "<|begin_of_text|>"):
  // what a chat template wrote (hf; the other kinds: = decode()).
  virtual std::string decode_with_special_tokens(const std::vector<int32_t>& ids) const {
    return decode(ids);
  }
  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
  virtual int32_t pad_id() const = 0;
  virtual std::vector<int32_t> stop_ids() const { return {eos_id()}; }
  // The id of a token given by its text (an added/special token such as "<|im_end|>", or a
  // vocabulary entry), -1 when there is none.
  virtual int32_t token_id(const std::string& token) const { (void)token; return -1; }
  virtual std::string identity() const = 0;
  virtual std::string spec() const = 0;  // "byte", absolute folder path, or absolute file path
  // The files that define this tokenizer (copied into checkpoints and exported folders).
  virtual std::vector<std::string> files() const { return {}; }
};

// ---- concrete kinds (load_tokenizer() is the usual entry point) ----------------------------

class ByteTokenizer final : public Tokenizer {
 public:
  std::string kind() const override { return "byte"; }
  std::vector<int32_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int32_t vocab_size() const override { return 259; }
  int32_t bos_id() const override { return 256; }
  int32_t eos_id() const override { return 257; }
  int32_t pad_id() const override { return 258; }
  std::string identity() const override;
  std::string spec() const override { return "byte"; }
};

class Gpt2Tokenizer final : public Tokenizer {
 public:
  // folder must hold vocab.json + merges.txt; throws rlhf::Error naming the missing/bad file.
  static std::unique_ptr<Gpt2Tokenizer> load(const std::string& folder);
  ~Gpt2Tokenizer() override;
  std::string kind() const override { return "gpt2"; }
  std::vector<int32_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int32_t vocab_size() const override;
  int32_t bos_id() const override;
  int32_t eos_id() const override;
  int32_t pad_id() const override;
  std::string identity() const override;
  std::string spec() const override;
  // The pre-tokenizer's chunks (byte ranges of text), exposed for tests and debugging.
  std::vector<std::string> pretokenize(const std::string& text) const;

 private:
  struct Impl;
  Gpt2Tokenizer();
  std::unique_ptr<Impl> impl_;
};

class Llama2cTokenizer final : public Tokenizer {
 public:
  // Reads llama2.c's tokenizer.bin (int32 max_token_length; per token: f32 score, int32 len,
  // bytes) up to EOF. Throws rlhf::Error naming the path and the token index on truncation.
  static std::unique_ptr<Llama2cTokenizer> load(const std::string& path);
  ~Llama2cTokenizer() override;
  std::string kind() const override { return "llama2c"; }
  // run.c's encode without BOS/EOS: dummy-prefix " " (non-empty text), codepoint lookup with
  // <0xNN> fallback (id = byte + 3), then greedy highest-score pair merges (leftmost on ties).
  std::vector<int32_t> encode(const std::string& text) const override;
  std::vector<int32_t> encode_with_special_tokens(const std::string& text) const override {
    std::vector<int32_t> ids = encode(text);  // run.c prepends BOS
    ids.insert(ids.begin(), bos_id());
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const override;
  // run.c's decode of one step: tok's piece, minus its leading space when prev is BOS; a <0xNN>
  // piece becomes that byte; BOS/EOS/PAD give "". Streaming callers pass prev = previous id.
  std::string decode_piece(int32_t prev, int32_t tok) const;
  const std::string& piece(int32_t id) const;  // raw vocabulary string
  float score(int32_t id) const;
  int32_t vocab_size() const override;
  int32_t bos_id() const override { return 1; }
  int32_t eos_id() const override { return 2; }
  int32_t pad_id() const override { return 0; }
  std::string identity() const override;
  std::string spec() const override;

 private:
  struct Impl;
  Llama2cTokenizer();
  std::unique_ptr<Impl> impl_;
};

class HfTokenizer final : public Tokenizer {
 public:
  // path: a folder holding tokenizer.json, or the tokenizer.json file. tokenizer_config.json
  // beside it gives BOS/EOS/PAD (strings or AddedToken objects); without it, or without an
  // eos_token there, loading fails (the stop token cannot be guessed). Throws rlhf::Error naming
  // the file, the JSON path and the component on anything unsupported.
  static std::unique_ptr<HfTokenizer> load(const std::string& path);
  ~HfTokenizer() override;
  std::string kind() const override { return "hf"; }
  // Added tokens are matched in the raw text first (leftmost-longest; lstrip, rstrip,
  // single_word, normalized honoured), the rest is normalised, pre-tokenised and run through BPE.
  std::vector<int32_t> encode(const std::string& text) const override;
  std::vector<int32_t> encode_with_special_tokens(const std::string& text) const override;
  // Special added tokens are dropped (skip_special_tokens); the decoder chain then runs. Bytes
  // are kept raw (never replaced by U+FFFD), so decode(encode(s)) == normalised s for any s.
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string decode_with_special_tokens(const std::vector<int32_t>& ids) const override;
  int32_t vocab_size() const override;
  int32_t bos_id() const override;
  int32_t eos_id() const override;
  int32_t pad_id() const override;
  std::vector<int32_t> stop_ids() const override;
  int32_t token_id(const std::string& token) const override;
  std::string identity() const override;
  std::string spec() const override;
  std::vector<std::string> files() const override;

 private:
  struct Impl;
  HfTokenizer();
  std::unique_ptr<Impl> impl_;
};

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // path: a SentencePiece .model file (or a folder holding tokenizer.model).
  static std::unique_ptr<SentencePieceTokenizer> load(const std::string& path);
  ~SentencePieceTokenizer() override;
  std::string kind() const override { return "sentencepiece"; }
  std::vector<int32_t> encode(const std::string& text) const override;  // = spm_encode's ids
  std::vector<int32_t> encode_with_special_tokens(const std::string& text) const override;  // BOS+
  std::string decode(const std::vector<int32_t>& ids) const override;  // control ids dropped
  int32_t vocab_size() const override;
  int32_t bos_id() const override;
  int32_t eos_id() const override;
  int32_t pad_id() const override;
  int32_t token_id(const std::string& token) const override;
  std::string identity() const override;
  std::string spec() const override;
  std::vector<std::string> files() const override;

 private:
  struct Impl;
  SentencePieceTokenizer();
  std::unique_ptr<Impl> impl_;
};

namespace detail {
// FNV-1a 64-bit over bytes; chain by passing the previous hash. Used for identity().
inline uint64_t fnv1a64(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ULL) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}
std::string hex16(uint64_t h);  // 16 lowercase hex digits
}  // namespace detail

// spec: "byte"; a folder holding tokenizer.json (hf), else tokenizer.model (sentencepiece), else
// vocab.json + merges.txt (gpt2); a *.json file (hf); a *.model file (sentencepiece); any other
// file is a llama2.c tokenizer.bin. Throws rlhf::Error naming the path and what is wrong (missing file, bad JSON, truncated .bin).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec);

// A model folder carries its tokenizer: copies the files that define `spec` into <dir>/tokenizer/
// (tokenizer.json + tokenizer_config.json [+ generation_config.json, special_tokens_map.json];
// or tokenizer.model [+ those configs]; or vocab.json + merges.txt; or the llama2.c .bin) and
// returns the spec relative to dir ("tokenizer", or "tokenizer/<file>.bin"); "byte" stays "byte".
// Nothing is copied when spec already is dir's own copy. Throws naming a file it cannot copy.
// flat: copy into dir itself (a Hugging Face export folder) and return ".".
std::string copy_tokenizer(const std::string& spec, const std::string& dir, bool flat = false);
// A spec stored relative to a model folder (as copy_tokenizer returns it) made absolute.
std::string resolve_tokenizer_spec(const std::string& spec, const std::string& dir);

}  // namespace rlhf
