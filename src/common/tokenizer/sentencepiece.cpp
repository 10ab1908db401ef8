// sentencepiece.cpp — SentencePieceTokenizer: Debian's libsentencepiece through the isolated
// module librlhf_spm.so (spm_shim.h says why), a Llama 2 / TinyLlama-era
// tokenizer.model. Ids equal spm_encode's. Contract: tokenizer.h.
// The module is looked for at $RLHF_SPM_MODULE, then beside the running executable, then in the
// build tree it was compiled in.
#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include <fmt/format.h>

#include "common/core/check.h"
#include "common/core/fs.h"
#include "common/tokenizer/tokenizer.h"
#include "common/tokenizer/spm_shim.h"

namespace rlhf {
namespace {

struct SpmApi {
  decltype(&rlhf_spm_load) load = nullptr;
  decltype(&rlhf_spm_free) free = nullptr;
  decltype(&rlhf_spm_encode) encode = nullptr;
  decltype(&rlhf_spm_decode) decode = nullptr;
  decltype(&rlhf_spm_info) info = nullptr;
  decltype(&rlhf_spm_piece_id) piece_id = nullptr;
};

std::string exe_dir() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::filesystem::path(std::string(buf, n)).parent_path().string() : "";
}

// Opens the module once per process; throws naming every place it looked.
const SpmApi& spm_api() {
  static std::once_flag once;
  static SpmApi api;
  static std::string error;
  std::call_once(once, [] {
    std::vector<std::string> where;
    if (const char* env = std::getenv("RLHF_SPM_MODULE")) where.emplace_back(env);
    where.push_back(exe_dir() + "/librlhf_spm.so");
#ifdef RLHF_SPM_MODULE
    where.emplace_back(RLHF_SPM_MODULE);
#endif
    void* h = nullptr;
    std::string tried;
    for (const auto& w : where) {
      h = dlopen(w.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (h != nullptr) break;
      tried += fmt::format("\n  {}: {}", w, dlerror());
    }
    if (h == nullptr) {
      error = "sentencepiece tokenizer: cannot open the module librlhf_spm.so (built with the "
              "executables; install libsentencepiece-dev and rebuild):" + tried;
      return;
    }
    api.load = reinterpret_cast<decltype(api.load)>(dlsym(h, "rlhf_spm_load"));
    api.free = reinterpret_cast<decltype(api.free)>(dlsym(h, "rlhf_spm_free"));
    api.encode = reinterpret_cast<decltype(api.encode)>(dlsym(h, "rlhf_spm_encode"));
    api.decode = reinterpret_cast<decltype(api.decode)>(dlsym(h, "rlhf_spm_decode"));
    api.info = reinterpret_cast<decltype(api.info)>(dlsym(h, "rlhf_spm_info"));
    api.piece_id = reinterpret_cast<decltype(api.piece_id)>(dlsym(h, "rlhf_spm_piece_id"));
    if (!api.load || !api.free || !api.encode || !api.decode || !api.info || !api.piece_id)
      error = "sentencepiece tokenizer: librlhf_spm.so lacks an rlhf_spm_* function (stale build?)";
  });
  RLHF_CHECK(error.empty(), "{}", error);
  return api;
}

}  // namespace

struct SentencePieceTokenizer::Impl {
  void* handle = nullptr;
  std::string path, identity;
  int32_t n = 0, bos = -1, eos = -1, pad = -1;
  ~Impl() {
    if (handle != nullptr) spm_api().free(handle);
  }
};

SentencePieceTokenizer::SentencePieceTokenizer() : impl_(std::make_unique<Impl>()) {}
SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path p = fs::absolute(path, ec).lexically_normal();
  if (fs::is_directory(p, ec)) p /= "tokenizer.model";
  const std::string bytes = read_file_bytes(p.string());
  const SpmApi& api = spm_api();
  std::unique_ptr<SentencePieceTokenizer> tok(new SentencePieceTokenizer());
  Impl& m = *tok->impl_;
  char err[512] = {0};
  m.handle = api.load(bytes.data(), bytes.size(), err, sizeof(err));
  RLHF_CHECK(m.handle != nullptr, "sentencepiece tokenizer: '{}' is not a SentencePiece model: {}",
             p.string(), err);
  m.path = p.string();
  m.n = api.info(m.handle, 0);
  m.bos = api.info(m.handle, 1);
  m.eos = api.info(m.handle, 2);
  RLHF_CHECK(m.eos >= 0, "sentencepiece tokenizer: '{}' has no EOS piece (eos_id is -1); a "
             "generation could never stop", m.path);
  m.pad = api.info(m.handle, 3) >= 0 ? api.info(m.handle, 3) : m.eos;
  m.identity = "sentencepiece:" +
               detail::hex16(detail::fnv1a64(bytes.data(), bytes.size(), detail::fnv1a64("spm", 3)));
  return tok;
}

std::vector<int32_t> SentencePieceTokenizer::encode(const std::string& text) const {
  std::vector<int32_t> ids(text.size() + 8);
  long n = spm_api().encode(impl_->handle, text.data(), text.size(), ids.data(), ids.size());
  if (n > static_cast<long>(ids.size())) {
    ids.resize(n);
    n = spm_api().encode(impl_->handle, text.data(), text.size(), ids.data(), ids.size());
  }
  RLHF_CHECK(n >= 0, "sentencepiece tokenizer '{}': encode failed", impl_->path);
  ids.resize(n);
  return ids;
}

std::vector<int32_t> SentencePieceTokenizer::encode_with_special_tokens(
    const std::string& text) const {
  std::vector<int32_t> ids = encode(text);
  if (impl_->bos >= 0) ids.insert(ids.begin(), impl_->bos);
  return ids;
}

std::string SentencePieceTokenizer::decode(const std::vector<int32_t>& ids) const {
  for (size_t i = 0; i < ids.size(); ++i)
    RLHF_CHECK(ids[i] >= 0 && ids[i] < impl_->n, "sentencepiece tokenizer: decode got id {} at "
               "position {}, expected 0..{}", ids[i], i, impl_->n - 1);
  std::string out(ids.size() * 8 + 16, '\0');
  long n = spm_api().decode(impl_->handle, ids.data(), ids.size(), out.data(), out.size());
  if (n > static_cast<long>(out.size())) {
    out.resize(n);
    n = spm_api().decode(impl_->handle, ids.data(), ids.size(), out.data(), out.size());
  }
  RLHF_CHECK(n >= 0, "sentencepiece tokenizer '{}': decode failed", impl_->path);
  out.resize(n);
  return out;
}

int32_t SentencePieceTokenizer::vocab_size() const { return impl_->n; }
int32_t SentencePieceTokenizer::bos_id() const { return impl_->bos; }
int32_t SentencePieceTokenizer::eos_id() const { return impl_->eos; }
int32_t SentencePieceTokenizer::pad_id() const { return impl_->pad; }
int32_t SentencePieceTokenizer::token_id(const std::string& t) const {
  return spm_api().piece_id(impl_->handle, t.data(), t.size());
}
std::string SentencePieceTokenizer::identity() const { return impl_->identity; }
std::string SentencePieceTokenizer::spec() const { return impl_->path; }
std::vector<std::string> SentencePieceTokenizer::files() const { return {impl_->path}; }

}  // namespace rlhf
