// spm_shim.h — a C interface to libsentencepiece, built as its own shared module
// (librlhf_spm.so, beside the executables) and opened with dlopen(RTLD_LOCAL | RTLD_DEEPBIND).
// Why: Debian's libsentencepiece exports the protobuf-lite 3.14 it embeds, and Debian's libtorch
// loads libprotobuf 3.21; linked into one process they bind to each other's symbols and crash at
// start-up. Isolated in this module, sentencepiece binds only to its own copy.
// Used only by src/common/tokenizer/sentencepiece.cpp. Every function is thread-safe for
// distinct calls on one handle (SentencePieceProcessor's const methods are).
#pragma once
#include <cstddef>
#include <cstdint>

extern "C" {
// Returns a handle, or nullptr with a message in err (NUL-terminated, at most err_len bytes).
void* rlhf_spm_load(const char* model_bytes, size_t n, char* err, size_t err_len);
void rlhf_spm_free(void* h);
// Writes up to cap ids; returns how many the text has (call again with a larger buffer when the
// result exceeds cap), or -1 on error.
long rlhf_spm_encode(void* h, const char* text, size_t n, int32_t* ids, size_t cap);
// Writes up to cap bytes; returns the decoded length (retry when larger than cap), -1 on error.
long rlhf_spm_decode(void* h, const int32_t* ids, size_t n, char* out, size_t cap);
// which: 0 piece count, 1 bos, 2 eos, 3 pad, 4 unk (-1 when the model has none).
int rlhf_spm_info(void* h, int which);
// The id of a piece, or -1 when the model does not have it.
int rlhf_spm_piece_id(void* h, const char* piece, size_t n);
}
