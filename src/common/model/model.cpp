// model.cpp — the layers of model.h (GPT-2 and Llama-architecture blocks, RMSNorm, activation
// checkpointing) and the trunk (Transformer). Config and cache: model_config.cpp; heads: heads.cpp.
#include "common/model/model.h"

#include <algorithm>
#include <cmath>

#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <fmt/ranges.h>

#include "common/core/check.h"
#include "common/core/strings.h"
#include "common/core/compat.h"

namespace rlhf {

// ---- blocks --------------------------------------------------------------------------------
namespace detail {
struct AttnCtx {
  torch::Tensor mask;      // [B|1, 1, 1, Tk] bool or undefined (pure causal)
  torch::Tensor cos, sin;  // [B, 1, T, D] (llama)
  KVCache* cache = nullptr;
  int64_t cache_pos = 0;
  torch::Tensor cache_index;  // [1] int64: decode_static's write slot
  int64_t static_len = 0;     // decode_static: cache slots [0, static_len) are attended
  PagedKV* paged = nullptr;   // decode_paged: the pool and the step's slots and blocks
  const PagedStep* step = nullptr;
  PackedRows packed;          // forward_packed: where each row lies
  std::vector<torch::Tensor> packed_masks;  // forward_packed: per length group [R, 1, L, L]
};
}  // namespace detail
using detail::AttnCtx;

namespace {

class BlockBase : public torch::nn::Module {
 public:
  virtual torch::Tensor run(const torch::Tensor& x, const AttnCtx& c) = 0;
  // Adapters on the projections among `targets` (lora.h); returns how many were added.
  virtual int add_lora(const LoraState* st, const std::vector<LoraTarget>& targets,
                       const torch::Device& dev) = 0;
  int64_t layer = 0;
  double dropout = 0;
  BlockParamHooks* hooks = nullptr;  // the trunk's (set_block_hooks)
};

// q [B,H,T,D], k/v [B,Hkv,T,D] -> [B,T,H*D]. Writes k/v into the cache when present.
torch::Tensor attend(const torch::Tensor& q, torch::Tensor k, torch::Tensor v, const AttnCtx& c,
                     int64_t layer, double dropout, bool training) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), Hkv = k.size(1);
  if (c.packed.defined()) {  // [1, h, T, D] -> per length group [R, h, L, D], attend, and back
    std::vector<torch::Tensor> outs;
    auto flat = [&](const torch::Tensor& x) {
      auto f = x.squeeze(0).transpose(0, 1);                                      // [T, h, D]
      return torch::cat({f, torch::zeros({1, f.size(1), D}, f.options())}, 0);    // [T + 1, h, D]
    };
    auto qf = flat(q), kf = flat(k), vf = flat(v);
    for (size_t i = 0; i < c.packed.groups.size(); ++i) {
      const auto& g = c.packed.groups[i];
      auto per_row = [&](const torch::Tensor& f) {
        return f.index_select(0, g.gather).view({g.rows, g.longest, f.size(1), D}).transpose(1, 2);
      };
      auto qr = per_row(qf), kr = per_row(kf), vr = per_row(vf);                  // [R, h, L, D]
      if (Hkv != H) {
        kr = kr.repeat_interleave(H / Hkv, 1);
        vr = vr.repeat_interleave(H / Hkv, 1);
      }
      auto y = compat::attention(qr, kr, vr, c.packed_masks[i], false, dropout, training);  // [R, H, L, D]
      outs.push_back(y.transpose(1, 2).reshape({g.rows * g.longest, H * D}));
    }
    return torch::cat(outs, 0).index_select(0, c.packed.scatter).unsqueeze(0);  // [1, T, H*D]
  }
  if (c.paged) {  // T == 1: write each row's key/value at its slot, gather its blocks
    auto& pk = c.paged->k[layer];  // [NB, bs, Hkv, D]
    auto& pv = c.paged->v[layer];
    const int64_t NB = pk.size(0), bs = pk.size(1), MB = c.step->block_table.size(1);
    pk.view({NB * bs, Hkv, D}).index_copy_(0, c.step->write_slot, k.squeeze(2).to(pk.scalar_type()));
    pv.view({NB * bs, Hkv, D}).index_copy_(0, c.step->write_slot, v.squeeze(2).to(pv.scalar_type()));
    auto idx = c.step->block_table.reshape({-1});                                // [R * MB]
    k = pk.index_select(0, idx).view({B, MB * bs, Hkv, D}).transpose(1, 2);      // [R, Hkv, L, D]
    v = pv.index_select(0, idx).view({B, MB * bs, Hkv, D}).transpose(1, 2);
  } else if (c.cache && c.cache_index.defined()) {
    auto& ck = c.cache->k[layer];
    auto& cv = c.cache->v[layer];
    ck.index_copy_(2, c.cache_index, k.to(ck.scalar_type()));
    cv.index_copy_(2, c.cache_index, v.to(cv.scalar_type()));
    k = ck.narrow(2, 0, c.static_len);  // [B, Hkv, L, D]
    v = cv.narrow(2, 0, c.static_len);
  } else if (c.cache) {
    auto& ck = c.cache->k[layer];
    auto& cv = c.cache->v[layer];
    ck.narrow(2, c.cache_pos, T).copy_(k);
    cv.narrow(2, c.cache_pos, T).copy_(v);
    k = ck.narrow(2, 0, c.cache_pos + T);  // [B, Hkv, Tk, D]
    v = cv.narrow(2, 0, c.cache_pos + T);
  }
  const bool causal = !c.mask.defined();  // else the trunk folded causality into the mask
  if (Hkv != H && T == 1) {
    // Decode step with GQA: fold the query heads sharing a kv head into the query axis, so the
    // cache is read in place instead of being repeated. One query row sees every unmasked key.
    auto qg = q.view({B, Hkv, H / Hkv, D});                                   // [B, Hkv, rep, D]
    auto y = compat::attention(qg, k, v, c.mask, false, dropout, training);  // [B, Hkv, rep, D]
    return y.reshape({B, 1, H * D});                                         // [B, 1, C]
  }
  if (Hkv != H) {  // GQA: query head h uses kv head h / (H / Hkv), as HF repeat_kv
    const int64_t Tk = k.size(2), rep = H / Hkv;
    k = k.unsqueeze(2).expand({B, Hkv, rep, Tk, D}).reshape({B, H, Tk, D});
    v = v.unsqueeze(2).expand({B, Hkv, rep, Tk, D}).reshape({B, H, Tk, D});
  }
  auto y = compat::attention(q, k, v, c.mask, causal, dropout, training);  // [B,H,T,D]
  return y.transpose(1, 2).reshape({B, T, H * D});                        // [B,T,C]
}

torch::Tensor drop(const torch::Tensor& x, double p, bool training) {
  return (training && p > 0) ? torch::dropout(x, p, true) : x;
}

// A projection y = W x + b with an optional LoRA adapter (lora.h): + s · B(A(dropout(x))).
// The adapter's Linear modules are registered as children "lora_A" / "lora_B" of the projection.
struct Proj {
  torch::nn::Linear base{nullptr};
  torch::nn::Linear lora_A{nullptr}, lora_B{nullptr};
  const LoraState* lora = nullptr;

  torch::Tensor operator()(const torch::Tensor& x, bool training) {
    torch::Tensor y = base(x);
    if (!lora || !lora->enabled) return y;
    const LoraOptions& o = lora->info.opt;
    return y + lora_B(lora_A(drop(x, o.dropout, training))) * o.scale();
  }
  void add_lora(const LoraState* st, const torch::Device& dev) {
    const int64_t in = base->options.in_features(), out = base->options.out_features();
    const int64_t r = st->info.opt.rank;
    RLHF_CHECK(r <= std::min(in, out),
               "model.lora.rank = {} exceeds the smaller side of a {} x {} projection: an adapter "
               "B·A of that rank cannot exist there (its rank is at most {}); set model.lora.rank <= {} "
               "or leave that projection out of model.lora.targets", r, out, in, std::min(in, out),
               std::min(in, out));
    auto a = torch::nn::Linear(torch::nn::LinearOptions(in, r).bias(false));  // kaiming-uniform
    auto b = torch::nn::Linear(torch::nn::LinearOptions(r, out).bias(false));
    {
      torch::NoGradGuard ng;
      b->weight.zero_();
    }
    a->to(dev);
    b->to(dev);
    lora_A = base->register_module("lora_A", a);
    lora_B = base->register_module("lora_B", b);
    lora = st;
  }
};

using ProjList = std::initializer_list<std::pair<LoraTarget, Proj*>>;

bool wants(const std::vector<LoraTarget>& targets, LoraTarget t) {
  return std::find(targets.begin(), targets.end(), t) != targets.end();
}

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
    weight = register_parameter("weight", torch::ones({dim}));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto xf = x.to(torch::kFloat);
    xf = xf * torch::rsqrt(xf.pow(2).mean(-1, true) + eps_);
    return weight * xf.to(x.scalar_type());
  }
  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

// HF gpt2 block: ln_1, attn.{c_attn,c_proj}, ln_2, mlp.{c_fc,c_proj}.
class GPT2BlockImpl : public BlockBase {
 public:
  explicit GPT2BlockImpl(const ModelConfig& cfg) : H_(cfg.n_head) {
    const int64_t C = cfg.d_model;
    ln_1 = register_module("ln_1", torch::nn::LayerNorm(
                                       torch::nn::LayerNormOptions({C}).eps(cfg.norm_eps)));
    auto attn = register_module("attn", std::make_shared<torch::nn::Module>());
    c_attn.base = attn->register_module("c_attn", torch::nn::Linear(C, 3 * C));
    attn_proj.base = attn->register_module("c_proj", torch::nn::Linear(C, C));
    ln_2 = register_module("ln_2", torch::nn::LayerNorm(
                                       torch::nn::LayerNormOptions({C}).eps(cfg.norm_eps)));
    auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>());
    c_fc.base = mlp->register_module("c_fc", torch::nn::Linear(C, cfg.d_ff));
    mlp_proj.base = mlp->register_module("c_proj", torch::nn::Linear(cfg.d_ff, C));
    dropout = cfg.dropout;
  }
  torch::Tensor run(const torch::Tensor& x, const AttnCtx& c) override {
    const int64_t B = x.size(0), T = x.size(1), C = x.size(2), D = C / H_;
    const bool tr = is_training();
    auto qkv = c_attn(ln_1(x), tr).view({B, T, 3, H_, D});  // [B, T, 3, H, D]
    auto q = qkv.select(2, 0).transpose(1, 2);          // [B, H, T, D]
    auto k = qkv.select(2, 1).transpose(1, 2);
    auto v = qkv.select(2, 2).transpose(1, 2);
    auto y = attend(q, k, v, c, layer, dropout, is_training());  // [B, T, C]
    auto h = x + drop(attn_proj(y, tr), dropout, tr);
    auto m = mlp_proj(torch::gelu(c_fc(ln_2(h), tr), "tanh"), tr);  // [B, T, C]
    return h + drop(m, dropout, tr);
  }
  int add_lora(const LoraState* st, const std::vector<LoraTarget>& targets,
               const torch::Device& dev) override {
    int n = 0;
    for (auto [t, p] : ProjList{{LoraTarget::CAttn, &c_attn}, {LoraTarget::CProj, &attn_proj},
                        {LoraTarget::CFc, &c_fc}, {LoraTarget::CProj, &mlp_proj}})
      if (wants(targets, t)) p->add_lora(st, dev), ++n;
    return n;
  }
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  Proj c_attn, attn_proj, c_fc, mlp_proj;

 private:
  int64_t H_;
};
TORCH_MODULE(GPT2Block);

torch::Tensor rotate_half(const torch::Tensor& x) {
  auto halves = x.chunk(2, -1);
  return torch::cat({-halves[1], halves[0]}, -1);
}

// HF llama decoder layer: input_layernorm, self_attn.{q,k,v,o}_proj (+ q_norm/k_norm for qwen3),
// post_attention_layernorm, mlp.{gate,up,down}_proj; biases per the config's flags.
class LlamaBlockImpl : public BlockBase {
 public:
  explicit LlamaBlockImpl(const ModelConfig& cfg)
      : H_(cfg.n_head), Hkv_(cfg.n_kv_head), D_(cfg.head_dim()) {
    const int64_t C = cfg.d_model, D = D_;
    auto lin = [](int64_t i, int64_t o, bool bias) {
      return torch::nn::Linear(torch::nn::LinearOptions(i, o).bias(bias));
    };
    input_layernorm = register_module("input_layernorm", RMSNorm(C, cfg.norm_eps));
    auto attn = register_module("self_attn", std::make_shared<torch::nn::Module>());
    q_proj.base = attn->register_module("q_proj", lin(C, H_ * D, cfg.qkv_bias));
    k_proj.base = attn->register_module("k_proj", lin(C, Hkv_ * D, cfg.qkv_bias));
    v_proj.base = attn->register_module("v_proj", lin(C, Hkv_ * D, cfg.qkv_bias));
    o_proj.base = attn->register_module("o_proj", lin(H_ * D, C, cfg.o_bias));
    if (cfg.qk_norm) {
      q_norm = attn->register_module("q_norm", RMSNorm(D, cfg.norm_eps));
      k_norm = attn->register_module("k_norm", RMSNorm(D, cfg.norm_eps));
    }
    post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(C, cfg.norm_eps));
    auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>());
    gate_proj.base = mlp->register_module("gate_proj", lin(C, cfg.d_ff, cfg.mlp_bias));
    up_proj.base = mlp->register_module("up_proj", lin(C, cfg.d_ff, cfg.mlp_bias));
    down_proj.base = mlp->register_module("down_proj", lin(cfg.d_ff, C, cfg.mlp_bias));
    dropout = cfg.dropout;
  }
  torch::Tensor run(const torch::Tensor& x, const AttnCtx& c) override {
    const int64_t B = x.size(0), T = x.size(1), D = D_;
    const bool tr = is_training();
    auto h = input_layernorm(x);
    auto q = q_proj(h, tr).view({B, T, H_, D});    // [B, T, H, D]
    auto k = k_proj(h, tr).view({B, T, Hkv_, D});  // [B, T, Hkv, D]
    if (q_norm) {  // qwen3: per-head RMSNorm over D, before RoPE
      q = q_norm(q);
      k = k_norm(k);
    }
    q = q.transpose(1, 2);  // [B, H, T, D]
    k = k.transpose(1, 2);  // [B, Hkv, T, D]
    auto v = v_proj(h, tr).view({B, T, Hkv_, D}).transpose(1, 2);
    auto cos = c.cos.to(q.scalar_type()), sin = c.sin.to(q.scalar_type());  // [B, 1, T, D]
    q = q * cos + rotate_half(q) * sin;
    k = k * cos + rotate_half(k) * sin;
    auto y = attend(q, k, v, c, layer, dropout, is_training());  // [B, T, H*D]
    auto r = x + drop(o_proj(y, tr), dropout, tr);
    auto g = post_attention_layernorm(r);
    auto m = down_proj(torch::silu(gate_proj(g, tr)) * up_proj(g, tr), tr);  // [B, T, C]
    return r + drop(m, dropout, tr);
  }
  int add_lora(const LoraState* st, const std::vector<LoraTarget>& targets,
               const torch::Device& dev) override {
    int n = 0;
    for (auto [t, p] : ProjList{{LoraTarget::Q, &q_proj}, {LoraTarget::K, &k_proj},
                        {LoraTarget::V, &v_proj}, {LoraTarget::O, &o_proj},
                        {LoraTarget::Gate, &gate_proj}, {LoraTarget::Up, &up_proj},
                        {LoraTarget::Down, &down_proj}})
      if (wants(targets, t)) p->add_lora(st, dev), ++n;
    return n;
  }
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr}, q_norm{nullptr},
      k_norm{nullptr};
  Proj q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj;

 private:
  int64_t H_, Hkv_, D_;
};
TORCH_MODULE(LlamaBlock);

// Activation checkpointing: forward without saving activations, recompute in backward with the
// same RNG and autocast state, accumulate parameter gradients there (reentrant, like PyTorch's
// torch.utils.checkpoint with use_reentrant=True).
struct CheckpointFn : public torch::autograd::Function<CheckpointFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x,
                               BlockBase* block, const AttnCtx* c) {
    ctx->saved_data["block"] = reinterpret_cast<int64_t>(block);
    ctx->saved_data["has_mask"] = c->mask.defined();
    if (c->mask.defined()) ctx->saved_data["mask"] = c->mask;
    ctx->saved_data["packed"] = static_cast<int64_t>(c->packed.groups.size());
    if (c->packed.defined()) {
      ctx->saved_data["p_scatter"] = c->packed.scatter;
      for (size_t i = 0; i < c->packed.groups.size(); ++i) {
        const auto& g = c->packed.groups[i];
        const std::string k = "p" + std::to_string(i);
        ctx->saved_data[k + "_gather"] = g.gather;
        ctx->saved_data[k + "_mask"] = c->packed_masks[i];
        ctx->saved_data[k + "_rows"] = g.rows;
        ctx->saved_data[k + "_longest"] = g.longest;
      }
    }
    ctx->saved_data["has_rope"] = c->cos.defined();
    if (c->cos.defined()) {
      ctx->saved_data["cos"] = c->cos;
      ctx->saved_data["sin"] = c->sin;
    }
    const bool rng = block->is_training();  // model or LoRA dropout may draw
    ctx->saved_data["rng"] = rng;
    if (rng) {
      at::Generator cpu = at::detail::getDefaultCPUGenerator();
      ctx->saved_data["cpu_rng"] = cpu.get_state();
      if (x.is_cuda()) {
        at::Generator g = at::globalContext().defaultGenerator(x.device());
        ctx->saved_data["cuda_rng"] = g.get_state();
      }
    }
    auto ac = compat::autocast_state();
    ctx->saved_data["ac_on"] = ac.enabled;
    ctx->saved_data["ac_dtype"] = static_cast<int64_t>(ac.dtype);
    ctx->save_for_backward({x});
    torch::NoGradGuard ng;
    return block->run(x, *c);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto x = ctx->get_saved_variables()[0];
    auto* block = reinterpret_cast<BlockBase*>(ctx->saved_data["block"].toInt());
    AttnCtx c;
    if (ctx->saved_data["has_mask"].toBool()) c.mask = ctx->saved_data["mask"].toTensor();
    const int64_t n_groups = ctx->saved_data["packed"].toInt();
    if (n_groups > 0) {
      c.packed.scatter = ctx->saved_data["p_scatter"].toTensor();
      for (int64_t i = 0; i < n_groups; ++i) {
        const std::string k = "p" + std::to_string(i);
        PackedRows::Group g;
        g.gather = ctx->saved_data[k + "_gather"].toTensor();
        g.rows = ctx->saved_data[k + "_rows"].toInt();
        g.longest = ctx->saved_data[k + "_longest"].toInt();
        c.packed.groups.push_back(g);
        c.packed_masks.push_back(ctx->saved_data[k + "_mask"].toTensor());
      }
    }
    if (ctx->saved_data["has_rope"].toBool()) {
      c.cos = ctx->saved_data["cos"].toTensor();
      c.sin = ctx->saved_data["sin"].toTensor();
    }
    const bool rng = ctx->saved_data["rng"].toBool();
    torch::Tensor cpu_now, cuda_now;
    if (rng) {
      at::Generator cpu = at::detail::getDefaultCPUGenerator();
      cpu_now = cpu.get_state();
      cpu.set_state(ctx->saved_data["cpu_rng"].toTensor());
      if (x.is_cuda()) {
        at::Generator g = at::globalContext().defaultGenerator(x.device());
        cuda_now = g.get_state();
        g.set_state(ctx->saved_data["cuda_rng"].toTensor());
      }
    }
    auto ac_prev = compat::autocast_state();
    compat::set_autocast_state({ctx->saved_data["ac_on"].toBool(),
                                static_cast<at::ScalarType>(ctx->saved_data["ac_dtype"].toInt())});
    torch::Tensor xd, y;
    if (block->hooks) block->hooks->before_block(block->layer);
    {
      torch::AutoGradMode on(true);
      xd = x.detach().requires_grad_(x.requires_grad());
      y = block->run(xd, c);
    }
    compat::set_autocast_state(ac_prev);
    if (rng) {
      at::Generator cpu = at::detail::getDefaultCPUGenerator();
      cpu.set_state(cpu_now);
      if (x.is_cuda()) {
        at::Generator g = at::globalContext().defaultGenerator(x.device());
        g.set_state(cuda_now);
      }
    }
    torch::autograd::backward({y}, {grad_out[0]});
    if (block->hooks) block->hooks->after_block_backward(block->layer);
    return {xd.requires_grad() ? xd.grad() : torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// The input of a block that runs without checkpointing while hooks are set: the identity, whose
// backward tells the hooks the block's backward is done. By then the engine has accumulated every
// parameter gradient of the block: each of the block's ops lies between this input and the
// block's output, so its backward node ran before this one became ready, and the AccumulateGrad
// nodes it made ready run before any other ready node (they have the highest sequence number).
struct BlockBoundaryFn : public torch::autograd::Function<BlockBoundaryFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, BlockBase* block) {
    ctx->saved_data["block"] = reinterpret_cast<int64_t>(block);
    return x;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto* block = reinterpret_cast<BlockBase*>(ctx->saved_data["block"].toInt());
    if (block->hooks) block->hooks->after_block_backward(block->layer);
    return {grad_out[0], torch::Tensor()};
  }
};

}  // namespace

// ---- trunk ---------------------------------------------------------------------------------
TransformerImpl::TransformerImpl(const ModelConfig& c) : cfg(c) {
  cfg.validate();
  const int64_t C = cfg.d_model;
  blocks = torch::nn::ModuleList();
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    std::shared_ptr<BlockBase> b;
    if (cfg.family == Family::GPT2) b = GPT2Block(cfg).ptr();
    else b = LlamaBlock(cfg).ptr();
    b->layer = l;
    blocks->push_back(b);
    block_ptrs_.push_back(b);
  }
  if (cfg.family == Family::GPT2) {
    wte = register_module("wte", torch::nn::Embedding(cfg.vocab_size, C));
    wpe = register_module("wpe", torch::nn::Embedding(cfg.max_seq_len, C));
    register_module("h", blocks);
    ln_f = register_module("ln_f", torch::nn::LayerNorm(
                                       torch::nn::LayerNormOptions({C}).eps(cfg.norm_eps)));
  } else {
    embed_tokens = register_module("embed_tokens", torch::nn::Embedding(cfg.vocab_size, C));
    register_module("layers", blocks);
    norm_ = register_module("norm", RMSNorm(C, cfg.norm_eps).ptr());
    inv_freq_ = rope_inv_freq(cfg);
  }
  // Initialisation (GPT-2 style).
  torch::NoGradGuard ng;
  const double resid_std = 0.02 / std::sqrt(2.0 * static_cast<double>(cfg.n_layer));
  auto ends_with = [](const std::string& s, const std::string& suf) {
    return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
  };
  for (auto& p : named_parameters()) {
    const std::string& n = p.key();
    auto& t = p.value();
    if (ends_with(n, ".bias")) t.zero_();
    else if (n.find("ln_") != std::string::npos || n.find("layernorm") != std::string::npos ||
             n == "norm.weight" || ends_with(n, "_norm.weight"))
      t.fill_(1.0);
    else if (ends_with(n, "c_proj.weight") || ends_with(n, "o_proj.weight") ||
             ends_with(n, "down_proj.weight"))
      t.normal_(0.0, resid_std);
    else t.normal_(0.0, 0.02);
  }
}

void TransformerImpl::add_lora(const LoraInfo& info, const std::vector<LoraTarget>& targets,
                               const torch::Device& dev) {
  RLHF_CHECK(!lora_, "add_lora: the model already has LoRA adapters");
  RLHF_CHECK(info.opt.rank > 0, "model.lora.rank must be > 0, got {}", info.opt.rank);
  lora_ = std::make_shared<LoraState>();
  lora_->info = info;
  int n = 0;
  for (auto& bp : block_ptrs_) n += static_cast<BlockBase*>(bp.get())->add_lora(lora_.get(), targets, dev);
  RLHF_CHECK(n > 0, "model.lora.targets = '{}' adapts no projection of this {} model",
             info.opt.targets, family_name(cfg.family));
}

void TransformerImpl::set_block_hooks(BlockParamHooks* hooks) {
  hooks_ = hooks;
  for (auto& bp : block_ptrs_) static_cast<BlockBase*>(bp.get())->hooks = hooks;
}

torch::Tensor TransformerImpl::token_embedding_weight() {
  return cfg.family == Family::GPT2 ? wte->weight : embed_tokens->weight;
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& tokens, const torch::Tensor& positions_in,
                                       const torch::Tensor& attention_mask, KVCache* cache,
                                       int64_t cache_pos) {
  RLHF_CHECK(tokens.dim() == 2, "Transformer::forward: tokens must be [B, T], got {} dims",
             tokens.dim());
  const int64_t B = tokens.size(0), T = tokens.size(1), Tk = cache_pos + T;
  auto dev = tokens.device();
  torch::Tensor positions = positions_in.defined()
      ? positions_in
      : torch::arange(cache_pos, Tk, torch::dtype(torch::kLong).device(dev)).unsqueeze(0).expand({B, T});
  RLHF_CHECK(positions.sizes() == tokens.sizes(),
             "Transformer::forward: positions shape {} must equal tokens shape {}",
             shape_str(positions), shape_str(tokens));
  AttnCtx c;
  c.cache = cache;
  c.cache_pos = cache_pos;
  if (cache) {
    RLHF_CHECK(static_cast<int64_t>(cache->k.size()) == cfg.n_layer,
               "Transformer::forward: KV cache has {} layers, model has {}", cache->k.size(),
               cfg.n_layer);
    RLHF_CHECK(cache_pos >= 0 && Tk <= cache->capacity,
               "Transformer::forward: cache_pos {} + T {} exceeds KV cache capacity {}", cache_pos,
               T, cache->capacity);
    RLHF_CHECK(cache->k[0].size(0) == B, "Transformer::forward: KV cache batch {} != batch {}",
               cache->k[0].size(0), B);
  } else {
    RLHF_CHECK(cache_pos == 0, "Transformer::forward: cache_pos {} without a cache", cache_pos);
  }
  // One combined "may attend" mask for all layers (padding + causal, bottom-right aligned, rows
  // without any visible key see everything); undefined = plain causal (flash-eligible).
  if (attention_mask.defined()) {
    RLHF_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == B && attention_mask.size(1) == Tk,
               "Transformer::forward: attention_mask must be [B={}, cache_pos+T={}], got {}", B, Tk,
               shape_str(attention_mask));
    c.mask = attention_mask.to(torch::kBool).view({B, 1, 1, Tk});  // [B, 1, 1, Tk]
  } else if (cache) {
    c.mask = torch::ones({1, 1, 1, Tk}, torch::dtype(torch::kBool).device(dev));
  }
  if (c.mask.defined()) {
    if (T > 1) {
      auto causal = torch::ones({T, Tk}, torch::dtype(torch::kBool).device(dev)).tril(cache_pos);
      c.mask = c.mask.logical_and(causal);  // [B|1, 1, T, Tk]
    }
    c.mask = c.mask.logical_or(c.mask.any(-1, true).logical_not());
  }
  const bool ckpt = cfg.activation_checkpointing && is_training() && cache == nullptr &&
                    torch::GradMode::is_enabled();
  return run_layers(tokens, positions, c, ckpt);
}

torch::Tensor TransformerImpl::decode_static(const torch::Tensor& tokens,
                                             const torch::Tensor& positions,
                                             const torch::Tensor& attention_mask, KVCache& cache,
                                             const torch::Tensor& cache_index) {
  const int64_t B = tokens.size(0);
  RLHF_CHECK(tokens.dim() == 2 && tokens.size(1) == 1 && positions.sizes() == tokens.sizes(),
             "decode_static: tokens and positions must be [B, 1]");
  const int64_t L = attention_mask.dim() == 2 ? attention_mask.size(1) : 0;
  RLHF_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == B && L >= 1 && L <= cache.capacity,
             "decode_static: attention_mask must be [B={}, L] with 1 <= L <= capacity={}", B,
             cache.capacity);
  RLHF_CHECK(cache_index.numel() == 1 && cache_index.scalar_type() == torch::kLong,
             "decode_static: cache_index must be one int64");
  AttnCtx c;
  c.cache = &cache;
  c.cache_index = cache_index;
  c.static_len = L;
  auto m = attention_mask.view({B, 1, 1, L});                     // [B, 1, 1, L]
  c.mask = m.logical_or(m.any(-1, true).logical_not());
  return run_layers(tokens, positions, c, false);
}

torch::Tensor TransformerImpl::forward_packed(const torch::Tensor& tokens,
                                              const torch::Tensor& positions,
                                              const PackedRows& packed) {
  RLHF_CHECK(tokens.dim() == 2 && tokens.size(0) == 1 && positions.sizes() == tokens.sizes(),
             "forward_packed: tokens and positions must be [1, T], got {} and {}", shape_str(tokens),
             shape_str(positions));
  const int64_t T = tokens.size(1);
  RLHF_CHECK(packed.defined() && packed.scatter.numel() == T,
             "forward_packed: PackedRows of {} tokens does not describe {} packed tokens",
             packed.defined() ? packed.scatter.numel() : 0, T);
  AttnCtx c;
  c.packed = packed;
  // Per length group: causal inside each row, keys of the row only; a pad query (past a row's
  // end) sees every key (its output is never scattered back).
  for (const auto& g : packed.groups) {
    RLHF_CHECK(g.gather.numel() == g.rows * g.longest &&
                   g.key_mask.sizes() == torch::IntArrayRef({g.rows, g.longest}),
               "forward_packed: a length group of {} rows x {} disagrees with its tensors", g.rows, g.longest);
    auto causal = torch::ones({g.longest, g.longest}, torch::dtype(torch::kBool).device(tokens.device())).tril();
    auto m = g.key_mask.view({g.rows, 1, 1, g.longest}).logical_and(causal);  // [R, 1, L, L]
    c.packed_masks.push_back(m.logical_or(m.any(-1, true).logical_not()));
  }
  const bool ckpt = cfg.activation_checkpointing && is_training() && torch::GradMode::is_enabled();
  return run_layers(tokens, positions, c, ckpt);
}

torch::Tensor TransformerImpl::decode_paged(const torch::Tensor& tokens,
                                            const torch::Tensor& positions, PagedKV& kv,
                                            const PagedStep& step) {
  const int64_t R = tokens.size(0);
  RLHF_CHECK(tokens.dim() == 2 && tokens.size(1) == 1 && positions.sizes() == tokens.sizes(),
             "decode_paged: tokens and positions must be [R, 1]");
  RLHF_CHECK(static_cast<int64_t>(kv.k.size()) == cfg.n_layer,
             "decode_paged: paged KV has {} layers, model has {}", kv.k.size(), cfg.n_layer);
  const int64_t L = step.block_table.size(1) * kv.block_size;
  RLHF_CHECK(step.write_slot.numel() == R && step.block_table.size(0) == R &&
                 step.attention_mask.sizes() == torch::IntArrayRef({R, L}),
             "decode_paged: write_slot [R={}], block_table [R, MB] and attention_mask [R, MB*{}] "
             "disagree", R, kv.block_size);
  AttnCtx c;
  c.paged = &kv;
  c.step = &step;
  c.mask = step.attention_mask.view({R, 1, 1, L});  // [R, 1, 1, L]
  return run_layers(tokens, positions, c, false);
}

torch::Tensor TransformerImpl::run_layers(const torch::Tensor& tokens,
                                          const torch::Tensor& positions, detail::AttnCtx& c,
                                          bool ckpt) {
  const auto dev = tokens.device();
  const bool training = is_training();
  if (hooks_) hooks_->before_trunk(torch::GradMode::is_enabled(), ckpt);
  torch::Tensor x;  // [B, T, C]
  if (cfg.family == Family::GPT2) {
    x = drop(wte(tokens) + wpe(positions), cfg.dropout, training);
  } else {
    x = embed_tokens(tokens);
    if (inv_freq_.device() != dev) inv_freq_ = inv_freq_.to(dev);  // once per device
    auto freqs = positions.to(torch::kFloat).unsqueeze(-1) * inv_freq_;  // [B, T, D/2]
    auto emb = torch::cat({freqs, freqs}, -1).unsqueeze(1);             // [B, 1, T, D]
    c.cos = emb.cos();
    c.sin = emb.sin();
  }
  // Hooks learn that a plain block's backward is done from a boundary node at its input.
  const bool boundary = hooks_ && !ckpt && torch::GradMode::is_enabled();
  // A checkpointed block's output requires grad only if its input does: with frozen embeddings
  // (LoRA) the adapters inside the blocks would get no gradient. Nothing upstream trains then.
  // (The same for a boundary node, which is otherwise not in the graph.)
  if ((ckpt || boundary) && !x.requires_grad()) x = x.detach().requires_grad_(true);
  for (auto& bp : block_ptrs_) {
    auto* b = static_cast<BlockBase*>(bp.get());
    if (hooks_) hooks_->before_block(b->layer);
    if (boundary) x = BlockBoundaryFn::apply(x, b);
    x = ckpt ? CheckpointFn::apply(x, b, &c) : b->run(x, c);
    if (hooks_) hooks_->after_block_forward(b->layer);
  }
  if (cfg.family == Family::GPT2) return ln_f(x);
  return static_cast<RMSNormImpl*>(norm_.get())->forward(x);
}

}  // namespace rlhf
