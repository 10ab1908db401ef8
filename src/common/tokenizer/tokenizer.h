// tokenizer.h — text <-> token ids. Three kinds:
//   byte     : ids 0..255 are bytes, 256 = BOS, 257 = EOS, 258 = PAD (vocab 259); no files.
//   gpt2     : byte-level BPE from a Hugging Face-style folder (vocab.json + merges.txt);
//              EOS = BOS = PAD = <|endoftext|> (50256). Exact against the reference encoder.
//   llama2c  : llama2.c's tokenizer.bin (score-ordered merges, <0xNN> byte fallback);
//              BOS = 1, EOS = 2, PAD = 0 (<unk>).
// encode() never adds special tokens; callers add BOS/EOS explicitly.
// identity() = "<kind>:<16 hex digits of a hash of the vocabulary>" — stored in datasets and
// checkpoints so a mismatch is detected; spec() is what load_tokenizer() accepts to rebuild it.
// Thread-safety: const methods are safe to call concurrently (the GPT-2 BPE cache is locked).
// Invalid UTF-8 input never throws: byte encodes raw bytes; gpt2 splits the valid UTF-8 runs
// with its regex and gives every byte outside them its own single-byte token (so decode(encode(s))
// == s for any bytes); llama2c follows run.c (unknown sequences fall back to <0xNN> tokens).
// decode() throws rlhf::Error on an id outside [0, vocab_size()), naming the id and position.
// Implementation: tokenizer.cpp (byte, load_tokenizer), gpt2.cpp, llama2c.cpp.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rlhf {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string kind() const = 0;  // "byte" | "gpt2" | "llama2c"
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  // Decodes ids to text; special tokens (BOS/EOS/PAD) are dropped. llama2c: a piece right after
  // BOS loses its leading space and <0xNN> pieces become raw bytes (llama2.c's run.c rules).
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
  virtual int32_t pad_id() const = 0;
  virtual std::string identity() const = 0;
  virtual std::string spec() const = 0;  // "byte", absolute folder path, or absolute file path
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

namespace detail {
// FNV-1a 64-bit over bytes; chain by passing the previous hash. Used for identity().
inline uint64_t fnv1a64(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ULL) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}
std::string hex16(uint64_t h);  // 16 lowercase hex digits
}  // namespace detail

// spec: "byte"; a folder containing vocab.json + merges.txt (GPT-2); or a llama2.c tokenizer file.
// Throws rlhf::Error naming the path and what is wrong (missing file, bad JSON, truncated .bin).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec);

}  // namespace rlhf
