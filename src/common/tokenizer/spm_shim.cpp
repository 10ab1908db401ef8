// spm_shim.cpp — see spm_shim.h. Built as the module librlhf_spm.so (not part of rlhf_core).
#include "common/tokenizer/spm_shim.h"

#include <cstring>
#include <string>
#include <vector>

#include <sentencepiece_processor.h>

namespace {
using Processor = sentencepiece::SentencePieceProcessor;
Processor* proc(void* h) { return static_cast<Processor*>(h); }
}  // namespace

extern "C" {

void* rlhf_spm_load(const char* bytes, size_t n, char* err, size_t err_len) {
  auto* p = new Processor();
  const auto st = p->LoadFromSerializedProto(std::string(bytes, n));
  if (st.ok()) return p;
  if (err_len > 0) {
    std::strncpy(err, st.ToString().c_str(), err_len - 1);
    err[err_len - 1] = '\0';
  }
  delete p;
  return nullptr;
}

void rlhf_spm_free(void* h) { delete proc(h); }

long rlhf_spm_encode(void* h, const char* text, size_t n, int32_t* ids, size_t cap) {
  std::vector<int> out;
  if (!proc(h)->Encode(std::string(text, n), &out).ok()) return -1;
  for (size_t i = 0; i < out.size() && i < cap; ++i) ids[i] = out[i];
  return static_cast<long>(out.size());
}

long rlhf_spm_decode(void* h, const int32_t* ids, size_t n, char* out, size_t cap) {
  std::string s;
  if (!proc(h)->Decode(std::vector<int>(ids, ids + n), &s).ok()) return -1;
  std::memcpy(out, s.data(), s.size() < cap ? s.size() : cap);
  return static_cast<long>(s.size());
}

int rlhf_spm_info(void* h, int which) {
  switch (which) {
    case 0: return proc(h)->GetPieceSize();
    case 1: return proc(h)->bos_id();
    case 2: return proc(h)->eos_id();
    case 3: return proc(h)->pad_id();
    case 4: return proc(h)->unk_id();
    default: return -1;
  }
}

int rlhf_spm_piece_id(void* h, const char* piece, size_t n) {
  const std::string p(piece, n);
  const int id = proc(h)->PieceToId(p);
  return proc(h)->IdToPiece(id) == p ? id : -1;
}

}  // extern "C"
