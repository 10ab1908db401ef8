// Fuzzes the tokenizer file readers and the tokenizers they build. The first byte picks the
// kind, the rest is the file: tokenizer.json (Hugging Face), vocab.json + merges.txt (GPT-2; split
// at the first NUL byte) or a llama2.c tokenizer.bin. A tokenizer that loads must encode and
// decode text (fixed multilingual text, and the input itself when it is valid UTF-8), and every
// id it produces must be inside its vocabulary.
#include <sys/stat.h>

#include <memory>
#include <string>

#include "common/tokenizer/tokenizer.h"
#include "fuzz_util.h"

using namespace rlhf;

namespace {

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                     : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

void exercise(const Tokenizer& tok, const std::string& input) {
  for (const std::string& text : {std::string("Hello wörld 123,\n\t  日本語 <|endoftext|> 🙂"), input}) {
    if (!valid_utf8(text)) continue;
    for (const auto& ids : {tok.encode(text), tok.encode_with_special_tokens(text)}) {
      for (int32_t id : ids)
        if (id < 0 || id >= tok.vocab_size()) __builtin_trap();  // an id outside the vocabulary
      tok.decode(ids);
      tok.decode_with_special_tokens(ids);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string spec;
  switch (data[0] % 3) {
    case 0:  // beside it, the tokenizer_config.json that names EOS (the seeds' added token)
      fuzz::write_scratch("tokenizer_config.json", R"({"eos_token": "<|endoftext|>"})");
      spec = fuzz::write_scratch("tokenizer.json", body);
      break;
    case 1: {
      const std::string dir = fuzz::scratch_dir() + "/gpt2";
      mkdir(dir.c_str(), 0700);
      const size_t nul = body.find('\0');
      fuzz::write_scratch("gpt2/vocab.json", body.substr(0, nul));
      fuzz::write_scratch("gpt2/merges.txt", nul == std::string::npos ? "" : body.substr(nul + 1));
      spec = dir;
      break;
    }
    default:
      spec = fuzz::write_scratch("tokenizer.bin", body);
  }
  fuzz::expect_clean([&] {
    std::unique_ptr<Tokenizer> tok = load_tokenizer(spec);
    exercise(*tok, body.substr(0, 256));
  });
  return 0;
}
