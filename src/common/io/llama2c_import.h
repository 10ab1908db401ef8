// llama2c_import.h — import of llama2.c's legacy model file (karpathy/llama2.c "version 0" export).
//
// Layout: int32 header {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len}
// (vocab_size < 0: an untied classifier wcls follows at the end), then float32 arrays, each stacked
// over layers where per-layer: tok_emb [V, dim], rms_att [L, dim], wq [L, H*hd, dim],
// wk [L, Hkv*hd, dim], wv [L, Hkv*hd, dim], wo [L, dim, H*hd], rms_ffn [L, dim],
// w1 [L, hidden, dim], w2 [L, dim, hidden], w3 [L, hidden, dim], rms_final [dim],
// freq_cis_real [seq_len, hd/2], freq_cis_imag [seq_len, hd/2], [wcls [V, dim]].
// llama2.c's RoPE rotates adjacent pairs (interleaved); q/k rows are permuted into Hugging Face's
// rotate-half layout exactly as HF's Llama conversion does, so the result is a plain "llama"
// family model (norm_eps 1e-5, rope_theta 10000). w1 -> gate_proj, w3 -> up_proj, w2 -> down_proj.
// Errors (rlhf::Error) name the file and the tensor being read (truncation, bad header, trailing
// bytes, the newer "ak42" versioned formats which are not supported).
#pragma once
#include <string>

#include "common/io/model_file.h"

namespace rlhf {

// Returns kind "causal_lm", cfg, tensors (native names); tok is left empty for the caller.
ModelFile import_llama2c(const std::string& path);

// The HF q/k row permutation for one projection weight [n_heads * head_dim, in]:
// interleaved pairs (2i, 2i+1) -> (i, i + head_dim/2) within each head.
torch::Tensor permute_rotary_rows(const torch::Tensor& w, int64_t n_heads);

}  // namespace rlhf
