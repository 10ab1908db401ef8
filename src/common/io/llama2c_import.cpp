#include "common/io/llama2c_import.h"

#include <cstring>
#include <fstream>

#include "common/core/check.h"

namespace rlhf {

torch::Tensor permute_rotary_rows(const torch::Tensor& w, int64_t n_heads) {
  const int64_t rows = w.size(0), cols = w.size(1), hd = rows / n_heads;
  // [H, hd/2, 2, in] -> [H, 2, hd/2, in]: row 2i+j of a head goes to j*hd/2 + i.
  return w.view({n_heads, hd / 2, 2, cols}).transpose(1, 2).reshape({rows, cols});
}

namespace {
class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
    RLHF_CHECK(in_.good(), "cannot open llama2.c model '{}': file not found or unreadable", path);
    in_.seekg(0, std::ios::end);
    size_ = static_cast<int64_t>(in_.tellg());
    in_.seekg(0);
  }
  torch::Tensor floats(const std::string& name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    const int64_t bytes = n * 4;
    RLHF_CHECK(pos_ + bytes <= size_,
               "{}: file truncated while reading tensor '{}' (needs {} bytes at offset {}, file has "
               "{} bytes)", path_, name, bytes, pos_, size_);
    auto t = torch::empty(shape, torch::kFloat);
    in_.read(reinterpret_cast<char*>(t.data_ptr<float>()), bytes);
    RLHF_CHECK(in_.good(), "{}: read error in tensor '{}'", path_, name);
    pos_ += bytes;
    return t;
  }
  int64_t pos() const { return pos_; }
  int64_t size() const { return size_; }
  void ints(int32_t* dst, int n) {
    RLHF_CHECK(size_ >= 4 * n, "{}: file truncated while reading the header ({} bytes, need {})",
               path_, size_, 4 * n);
    in_.read(reinterpret_cast<char*>(dst), 4 * n);
    pos_ += 4 * n;
  }

 private:
  std::string path_;
  std::ifstream in_;
  int64_t size_ = 0, pos_ = 0;
};
}  // namespace

ModelFile import_llama2c(const std::string& path) {
  Reader r(path);
  int32_t h[7];
  r.ints(h, 1);
  RLHF_CHECK(h[0] != 0x616b3432, "{}: this is a versioned llama2.c export (magic 'ak42'); only the "
             "legacy (version 0) format is supported", path);
  r.ints(h + 1, 6);
  const int64_t dim = h[0], hidden = h[1], L = h[2], H = h[3], Hkv = h[4], seq = h[6];
  const bool shared = h[5] > 0;
  const int64_t V = std::abs(static_cast<int64_t>(h[5]));
  RLHF_CHECK(dim > 0 && hidden > 0 && L > 0 && H > 0 && Hkv > 0 && V > 0 && seq > 0 &&
                 dim % H == 0 && H % Hkv == 0 && (dim / H) % 2 == 0,
             "{}: implausible llama2.c header dim={} hidden_dim={} n_layers={} n_heads={} "
             "n_kv_heads={} vocab_size={} seq_len={} (not a llama2.c legacy model file?)",
             path, h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
  const int64_t hd = dim / H;
  ModelFile f;
  f.path = path;
  f.kind = "causal_lm";
  f.cfg.family = Family::Llama;
  f.cfg.vocab_size = V;
  f.cfg.n_layer = L;
  f.cfg.n_head = H;
  f.cfg.n_kv_head = Hkv;
  f.cfg.d_model = dim;
  f.cfg.d_ff = hidden;
  f.cfg.max_seq_len = seq;
  f.cfg.norm_eps = 1e-5;
  f.cfg.rope_theta = 10000.0;
  f.cfg.tie_embeddings = shared;
  f.cfg.validate();
  f.extra = {{"source", "llama2c"}, {"source_file", path}};

  auto& T = f.tensors;
  auto lay = [](int64_t l, const char* s) { return "model.layers." + std::to_string(l) + "." + s; };
  T["model.embed_tokens.weight"] = r.floats("tok_embeddings", {V, dim});
  auto rms_att = r.floats("rms_att_weight", {L, dim});
  auto wq = r.floats("wq", {L, H * hd, dim});
  auto wk = r.floats("wk", {L, Hkv * hd, dim});
  auto wv = r.floats("wv", {L, Hkv * hd, dim});
  auto wo = r.floats("wo", {L, dim, H * hd});
  auto rms_ffn = r.floats("rms_ffn_weight", {L, dim});
  auto w1 = r.floats("w1", {L, hidden, dim});
  auto w2 = r.floats("w2", {L, dim, hidden});
  auto w3 = r.floats("w3", {L, hidden, dim});
  T["model.norm.weight"] = r.floats("rms_final_weight", {dim});
  r.floats("freq_cis_real", {seq, hd / 2});
  r.floats("freq_cis_imag", {seq, hd / 2});
  if (!shared) T["lm_head.weight"] = r.floats("wcls", {V, dim});
  RLHF_CHECK(r.pos() == r.size(), "{}: {} unexpected trailing bytes after the last tensor (header "
             "says vocab_size={}; wrong format?)", path, r.size() - r.pos(), h[5]);
  for (int64_t l = 0; l < L; ++l) {
    T[lay(l, "input_layernorm.weight")] = rms_att[l].clone();
    T[lay(l, "self_attn.q_proj.weight")] = permute_rotary_rows(wq[l], H).contiguous();
    T[lay(l, "self_attn.k_proj.weight")] = permute_rotary_rows(wk[l], Hkv).contiguous();
    T[lay(l, "self_attn.v_proj.weight")] = wv[l].clone();
    T[lay(l, "self_attn.o_proj.weight")] = wo[l].clone();
    T[lay(l, "post_attention_layernorm.weight")] = rms_ffn[l].clone();
    T[lay(l, "mlp.gate_proj.weight")] = w1[l].clone();
    T[lay(l, "mlp.down_proj.weight")] = w2[l].clone();
    T[lay(l, "mlp.up_proj.weight")] = w3[l].clone();
  }
  return f;
}

}  // namespace rlhf
