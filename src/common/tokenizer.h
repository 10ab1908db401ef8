// tokenizer.h — text <-> token ids. Three kinds:
//   byte     : ids 0..255 are bytes, 256 = BOS, 257 = EOS, 258 = PAD (vocab 259); no files.
//   gpt2     : byte-level BPE from a Hugging Face-style folder (vocab.json + merges.txt);
//              EOS = BOS = PAD = <|endoftext|> (50256). Exact against the reference encoder.
//   llama2c  : llama2.c's tokenizer.bin (score-ordered merges, <0xNN> byte fallback);
//              BOS = 1, EOS = 2, PAD = 0 (<unk>).
// encode() never adds special tokens; callers add BOS/EOS explicitly.
// identity() = "<kind>:<16 hex digits of a hash of the vocabulary>" — stored in datasets and
// checkpoints so a mismatch is detected; spec() is what load_tokenizer() accepts to rebuild it.
// Thread-safety: const methods are safe to call concurrently.
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

// spec: "byte"; a folder containing vocab.json + merges.txt (GPT-2); or a llama2.c tokenizer file.
// Throws rlhf::Error naming the path and what is wrong (missing file, bad JSON, truncated .bin).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec);

}  // namespace rlhf
