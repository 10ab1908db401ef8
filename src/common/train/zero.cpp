// zero.cpp — see zero.h.
#include "common/train/zero.h"

#include <cmath>
#include <map>
#include <set>

#include "common/core/check.h"
#include "common/core/compat.h"

namespace rlhf {

ZeroStage zero_stage_from(int64_t value) {
  RLHF_CHECK(value >= 0 && value <= 3, "dist.zero_stage = {}: expected 0, 1, 2 or 3", value);
  return static_cast<ZeroStage>(value);
}

struct ZeroEngine::Group {
  std::vector<size_t> params;    // indices into params_
  std::vector<int64_t> offset;   // each one's first element in the group's flat [N_g]
  int64_t padded = 0, shard = 0;  // P_g, S_g
  int64_t state_off = 0;          // this group's shard in m_ / v_ / grads
  bool block = false;             // a transformer block's parameters (stage 3: per-block gathers)
  torch::Tensor full;             // [P_g] the parameters' storage while held
  torch::Tensor pshard;           // stage 3: [S_g] this rank's parameters
  torch::Tensor gacc;             // stage >= 2: [S_g] gradient sum (a view of grads_)
  bool gathered = false;
  bool hooked = false;            // stage >= 2: a block hook scattered it in this backward
  int pending = 0;                // stage 2: passes through the block with gradients not yet
                                  // back-propagated in this backward
};

// A piece of one parameter inside this rank's shard: shard-local [begin, end).
struct ShardRange {
  size_t param;
  int64_t begin, end;
};

namespace {

std::vector<ShardRange> shard_ranges(const std::vector<size_t>& params,
                                     const std::vector<int64_t>& offset, int64_t lo, int64_t len,
                                     const std::vector<int64_t>& numel) {
  std::vector<ShardRange> out;
  for (size_t k = 0; k < params.size(); ++k) {
    const int64_t a = std::max(lo, offset[k]), b = std::min(lo + len, offset[k] + numel[params[k]]);
    if (a < b) out.push_back({params[k], a - lo, b - lo});
  }
  return out;
}

// AdamW's update of m, v, p from g, elementwise (the same ops, in the same order, as AdamW::step).
void adam_update(torch::Tensor p, const torch::Tensor& g, torch::Tensor m, torch::Tensor v,
                 const AdamWHyper& h, double step_size, double bc2_sqrt) {
  m.mul_(h.beta1).add_(g, 1.0 - h.beta1);
  v.mul_(h.beta2).addcmul_(g, g, 1.0 - h.beta2);
  torch::Tensor denom = (v.sqrt() / bc2_sqrt).add_(h.eps);
  p.addcdiv_(m, denom, -step_size);
}

}  // namespace

// ---- block hooks (stages 2 and 3) ---------------------------------------------------------

// Stage 2: a block's gradients are reduce-scattered during the backward, at each of its backward
// firings (one per forward pass with gradients): every rank runs the same passes, so the same
// collectives in the same order. Inside a GatheredParams span (varying_passes_: ranks may run
// different numbers of passes, as the RM's prompt-prefix cache and length buckets make them) only
// at the last of its firings since the last after_backward: each pass is a chain through the
// blocks, so block l's last firing follows block l+1's on every rank, and every rank still
// reduce-scatters the blocks once each, in the order L-1, ..., 0.
// Stage 3 gathers a block before each forward and recompute, frees it after, and reduce-scatters
// at every firing (its trunk passes are the same on every rank: zero.h).
class ZeroEngine::TrunkHooks : public BlockParamHooks {
 public:
  TrunkHooks(ZeroEngine& e, std::vector<int> layer_group, int rest)
      : e_(e), layer_group_(std::move(layer_group)), rest_(rest),
        params_sharded_(e.stage_ == ZeroStage::Parameters) {}
  void before_trunk(bool grad, bool checkpointed) override {
    if (!params_sharded_ || e_.pinned_) return;
    // Block parameters freed after their forward are found again only by a recomputing backward.
    RLHF_CHECK(!grad || checkpointed,
               "dist.zero_stage = 3: a trunk pass with gradients but without activation "
               "checkpointing (model in eval mode, or a KV cache) cannot gather block parameters "
               "per block; hold the whole model for it (GatheredParams, train/optimizer.h)");
    if (rest_ >= 0 && !e_.groups_[rest_].gathered) e_.gather_group(e_.groups_[rest_]);
  }
  void before_block(int64_t l) override {
    Group* g = group(l);
    if (params_sharded_ && g && !e_.pinned_ && !g->gathered) e_.gather_group(*g);
  }
  void after_block_forward(int64_t l) override {
    Group* g = group(l);
    if (!g) return;
    if (!params_sharded_ && torch::GradMode::is_enabled()) ++g->pending;
    if (params_sharded_ && !e_.pinned_) e_.release_group(*g);
  }
  void after_block_backward(int64_t l) override {
    Group* g = group(l);
    if (!g || e_.pinned_) return;  // pinned: after_backward reduce-scatters every group
    if (!params_sharded_ && e_.varying_passes_ && g->pending > 0 && --g->pending > 0) return;  // more to come
    e_.scatter_grads(*g);
    g->hooked = true;
    if (params_sharded_) e_.release_group(*g);
  }

 private:
  Group* group(int64_t l) {
    const int gi = l < static_cast<int64_t>(layer_group_.size()) ? layer_group_[l] : -1;
    return gi >= 0 ? &e_.groups_[gi] : nullptr;
  }
  ZeroEngine& e_;
  std::vector<int> layer_group_;  // layer -> group index (-1: no trainable parameters)
  int rest_;
  bool params_sharded_;           // stage 3
};

// ---- construction --------------------------------------------------------------------------

// Groups: one per transformer block with trainable parameters (trunk by trunk, in order), then
// the rest. group_of_block: block number -> group (-1: none). Returns the rest group (-1: none).
int ZeroEngine::make_groups(torch::nn::Module& model, std::vector<int>& group_of_block) {
  // Which block each parameter belongs to (by tensor identity), trunk by trunk.
  std::map<const void*, int> block_of;  // TensorImpl -> block group number
  std::vector<std::pair<TransformerImpl*, int64_t>> block_ids;  // block group number -> (trunk, layer)
  for (const auto& m : model.modules(/*include_self=*/false)) {
    auto* t = dynamic_cast<TransformerImpl*>(m.get());
    if (!t) continue;
    trunks_.push_back(t);
    for (size_t l = 0; l < t->block_modules().size(); ++l) {
      for (const auto& p : t->block_modules()[l]->parameters())
        block_of[p.unsafeGetTensorImpl()] = static_cast<int>(block_ids.size());
      block_ids.emplace_back(t, static_cast<int64_t>(l));
    }
  }
  group_of_block.assign(block_ids.size(), -1);
  std::vector<size_t> rest;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto it = block_of.find(params_[i].unsafeGetTensorImpl());
    if (it == block_of.end()) {
      rest.push_back(i);
      continue;
    }
    int& gi = group_of_block[it->second];
    if (gi < 0) {
      gi = static_cast<int>(groups_.size());
      groups_.emplace_back();
      groups_.back().block = true;
    }
    groups_[gi].params.push_back(i);
  }
  if (rest.empty()) return -1;
  groups_.emplace_back();
  groups_.back().params = rest;
  return static_cast<int>(groups_.size()) - 1;
}

ZeroEngine::ZeroEngine(ZeroStage stage, Communicator& comm, torch::nn::Module& model,
                       const std::vector<torch::Tensor>& params)
    : stage_(stage), comm_(comm), params_(params) {
  RLHF_CHECK(stage != ZeroStage::Off, "ZeroEngine: dist.zero_stage 0 needs no engine");
  RLHF_CHECK(!params_.empty(), "dist.zero_stage = {}: the model has no trainable parameters",
             static_cast<int>(stage));
  torch::NoGradGuard ng;
  for (const auto& p : params_)
    RLHF_CHECK(p.scalar_type() == params_[0].scalar_type() && p.device() == params_[0].device() &&
                   p.is_floating_point() && p.is_contiguous(),
               "dist.zero_stage = {}: trainable parameters must share one floating dtype and "
               "device and be contiguous (got {} on {} beside {} on {})", static_cast<int>(stage),
               c10::toString(p.scalar_type()), p.device().str(),
               c10::toString(params_[0].scalar_type()), params_[0].device().str());
  std::set<const void*> seen;
  for (const auto& p : params_)
    RLHF_CHECK(seen.insert(p.unsafeGetTensorImpl()).second,
               "dist.zero_stage = {}: a parameter is listed twice (shared weights must be one "
               "parameter)", static_cast<int>(stage));
  for (const auto& p : params_) {
    shape_.push_back(p.sizes().vec());
    numel_.push_back(p.numel());
  }
  std::vector<int> group_of_block;
  const int rest_group = make_groups(model, group_of_block);
  // Layout: offsets, padding to a multiple of the world size, this rank's shard.
  const int64_t W = comm_.world_size();
  int64_t state = 0;
  for (auto& g : groups_) {
    int64_t n = 0;
    for (size_t i : g.params) {
      g.offset.push_back(n);
      n += numel_[i];
    }
    g.padded = (n + W - 1) / W * W;
    g.shard = g.padded / W;
    g.state_off = state;
    state += g.shard;
  }
  const auto opts = params_[0].options();
  m_ = torch::zeros({state}, opts);  // [Σ_g S_g]
  v_ = torch::zeros({state}, opts);
  if (stage_ >= ZeroStage::Gradients) grads_ = torch::zeros({state}, opts);
  has_grad_.assign(params_.size(), 0.f);
  for (auto& g : groups_) {
    std::vector<torch::Tensor> flat;
    for (size_t i : g.params) flat.push_back(params_[i].detach().reshape(-1));
    const int64_t n = g.offset.empty() ? 0 : g.offset.back() + numel_[g.params.back()];
    if (g.padded > n) flat.push_back(torch::zeros({g.padded - n}, opts));
    torch::Tensor full = torch::cat(flat);  // [P_g]
    if (stage_ >= ZeroStage::Gradients) g.gacc = grads_.narrow(0, g.state_off, g.shard);
    if (stage_ == ZeroStage::Parameters) {
      g.pshard = full.narrow(0, comm_.rank() * g.shard, g.shard).clone();  // [S_g]
      release_group(g);
    } else {
      g.full = full;
      for (size_t k = 0; k < g.params.size(); ++k)
        params_[g.params[k]].set_data(full.narrow(0, g.offset[k], numel_[g.params[k]]).view(shape_[g.params[k]]));
      g.gathered = true;
    }
  }
  if (stage_ >= ZeroStage::Gradients) {
    size_t b = 0;
    for (auto* t : trunks_) {
      std::vector<int> layer_group;
      for (size_t l = 0; l < t->block_modules().size(); ++l) layer_group.push_back(group_of_block[b++]);
      hooks_.push_back(std::make_unique<TrunkHooks>(*this, layer_group, rest_group));
      t->set_block_hooks(hooks_.back().get());
    }
  }
  measure_params();
  held_.optimizer_state = m_.nbytes() + v_.nbytes();
}

ZeroEngine::~ZeroEngine() {
  for (auto* t : trunks_) t->set_block_hooks(nullptr);
}

// ---- gathering and scattering ----------------------------------------------------------------

void ZeroEngine::gather_group(Group& g) {
  torch::NoGradGuard ng;
  g.full = comm_.all_gather(g.pshard);  // [P_g]
  for (size_t k = 0; k < g.params.size(); ++k) {
    const size_t i = g.params[k];
    params_[i].set_data(g.full.narrow(0, g.offset[k], numel_[i]).view(shape_[i]));
  }
  g.gathered = true;
}

void ZeroEngine::release_group(Group& g) {
  for (size_t i : g.params)
    params_[i].set_data(torch::empty({0}, torch::dtype(params_[i].scalar_type()).device(params_[i].device())));
  g.full = torch::Tensor();
  g.gathered = false;
  // bf16 autocast caches a cast copy of each weight until cleared: drop the freed block's too.
  if (params_[0].is_cuda()) compat::clear_autocast_cache();
}

torch::Tensor ZeroEngine::flat_grads(const Group& g) {
  std::vector<torch::Tensor> flat;
  int64_t n = 0;
  for (size_t i : g.params) {
    const torch::Tensor& gr = params_[i].grad();
    flat.push_back(gr.defined() ? gr.reshape(-1) : torch::zeros({numel_[i]}, m_.options()));
    n += numel_[i];
  }
  if (g.padded > n) flat.push_back(torch::zeros({g.padded - n}, m_.options()));
  return torch::cat(flat);  // [P_g]
}

void ZeroEngine::scatter_grads(Group& g) {
  torch::NoGradGuard ng;
  record_live_grads();
  torch::Tensor part = comm_.reduce_scatter(flat_grads(g), ReduceOp::Sum);  // [S_g]
  if (stage_ >= ZeroStage::Gradients) {
    g.gacc.add_(part);
  } else {
    grads_.narrow(0, g.state_off, g.shard).copy_(part);
  }
  for (size_t i : g.params) {
    if (params_[i].grad().defined()) has_grad_[i] = 1.f;
    params_[i].mutable_grad() = torch::Tensor();
  }
}

void ZeroEngine::after_backward() {
  if (stage_ < ZeroStage::Gradients) return;
  // The block hooks scattered the blocks whose backward ran (hooked, the same on every rank:
  // every rank runs the same passes), stage 3's always unless the whole model is held (pinned_).
  // The rest group (embeddings, final norm, heads) completes only at the end of the backward.
  for (auto& g : groups_) {
    const bool done = g.hooked || (stage_ == ZeroStage::Parameters && g.block && !pinned_);
    if (!done) scatter_grads(g);
    g.hooked = false;
    g.pending = 0;
  }
}

void ZeroEngine::record_live_grads() {
  int64_t bytes = 0;
  for (const auto& p : params_)
    if (p.grad().defined()) bytes += p.grad().nbytes();
  held_.peak_grads = std::max(held_.peak_grads, bytes);
}

// ---- the step ------------------------------------------------------------------------------

ZeroStepResult ZeroEngine::step(const AdamWHyper& h, double lr, double grad_clip,
                                bool loss_finite, int64_t& step) {
  torch::NoGradGuard ng;
  int64_t grad_bytes = stage_ >= ZeroStage::Gradients ? grads_.nbytes() : 0;
  for (const auto& p : params_)
    if (p.grad().defined()) grad_bytes += p.grad().nbytes();
  held_.grads = std::max(held_.grads, grad_bytes);
  record_live_grads();
  if (stage_ == ZeroStage::Optimizer) {  // the full gradients of all micro-batches, summed
    grads_ = torch::empty_like(m_);
    for (auto& g : groups_) scatter_grads(g);
  }
  const double W = comm_.world_size();
  grads_.div_(W);  // the average over ranks, as all_reduce_gradients
  // Which parameters have a gradient on some rank (the others are left alone).
  torch::Tensor has = torch::tensor(has_grad_, torch::kFloat);
  comm_.all_reduce(has);  // [n params] ranks with a gradient
  const float* hp = has.data_ptr<float>();
  ZeroStepResult r;
  const double sq = grads_.to(torch::kFloat).pow(2).sum().item<double>();
  r.grad_norm = std::sqrt(comm_.all_reduce_scalar(sq));
  const double bad = comm_.all_reduce_scalar(loss_finite ? 0.0 : 1.0, ReduceOp::Max);
  std::fill(has_grad_.begin(), has_grad_.end(), 0.f);
  auto reset_grads = [&] {
    if (stage_ == ZeroStage::Optimizer) grads_ = torch::Tensor();
    else grads_.zero_();
  };
  if (!std::isfinite(r.grad_norm) || bad > 0) {
    r.skipped = true;
    reset_grads();
    return r;
  }
  if (grad_clip > 0 && r.grad_norm > grad_clip) grads_.mul_(grad_clip / (r.grad_norm + 1e-6));
  ++step;
  const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(step));
  const double step_size = lr / bc1, bc2_sqrt = std::sqrt(bc2);
  const int64_t rank = comm_.rank();
  for (auto& g : groups_) {
    torch::Tensor p = stage_ == ZeroStage::Parameters ? g.pshard : g.full.narrow(0, rank * g.shard, g.shard);
    torch::Tensor gr = grads_.narrow(0, g.state_off, g.shard);
    torch::Tensor m = m_.narrow(0, g.state_off, g.shard), v = v_.narrow(0, g.state_off, g.shard);
    const auto ranges = shard_ranges(g.params, g.offset, rank * g.shard, g.shard, numel_);
    bool all_active = true;
    for (const auto& rg : ranges) {
      const bool active = hp[rg.param] > 0.5f;
      all_active = all_active && active;
      if (active && h.weight_decay > 0 && shape_[rg.param].size() >= 2)
        p.narrow(0, rg.begin, rg.end - rg.begin).mul_(1.0 - lr * h.weight_decay);
    }
    if (all_active) {
      adam_update(p, gr, m, v, h, step_size, bc2_sqrt);
      continue;
    }
    for (const auto& rg : ranges) {
      if (hp[rg.param] <= 0.5f) continue;
      const int64_t n = rg.end - rg.begin;
      adam_update(p.narrow(0, rg.begin, n), gr.narrow(0, rg.begin, n), m.narrow(0, rg.begin, n),
                  v.narrow(0, rg.begin, n), h, step_size, bc2_sqrt);
    }
  }
  // Every rank's parameters from the updated shards (stage 3: blocks gather at their next use,
  // the other parameters at the next trunk pass).
  for (auto& g : groups_) {
    if (stage_ == ZeroStage::Parameters) {
      if (g.gathered && !pinned_) release_group(g);
    } else {
      g.full.copy_(comm_.all_gather(g.full.narrow(0, rank * g.shard, g.shard)));
    }
  }
  reset_grads();
  measure_params();
  return r;
}

void ZeroEngine::measure_params() {
  int64_t bytes = 0;
  for (const auto& g : groups_) {
    if (g.full.defined()) bytes += g.full.nbytes();
    if (g.pshard.defined()) bytes += g.pshard.nbytes();
  }
  held_.params = bytes;
}

// ---- checkpoints ---------------------------------------------------------------------------

void ZeroEngine::gather_moments(std::vector<torch::Tensor>& m, std::vector<torch::Tensor>& v) {
  torch::NoGradGuard ng;
  m.assign(params_.size(), torch::Tensor());
  v.assign(params_.size(), torch::Tensor());
  for (const auto& g : groups_) {
    torch::Tensor fm = comm_.all_gather(m_.narrow(0, g.state_off, g.shard));  // [P_g]
    torch::Tensor fv = comm_.all_gather(v_.narrow(0, g.state_off, g.shard));
    for (size_t k = 0; k < g.params.size(); ++k) {
      const size_t i = g.params[k];
      m[i] = fm.narrow(0, g.offset[k], numel_[i]).view(shape_[i]);
      v[i] = fv.narrow(0, g.offset[k], numel_[i]).view(shape_[i]);
    }
  }
}

void ZeroEngine::load_moments(const std::vector<torch::Tensor>& m,
                              const std::vector<torch::Tensor>& v) {
  torch::NoGradGuard ng;
  RLHF_CHECK(m.size() == params_.size() && v.size() == params_.size(),
             "ZeroEngine::load_moments: {} / {} moments for {} parameters", m.size(), v.size(),
             params_.size());
  m_.zero_();
  v_.zero_();
  for (const auto& g : groups_) {
    const int64_t lo = comm_.rank() * g.shard;
    for (const auto& rg : shard_ranges(g.params, g.offset, lo, g.shard, numel_)) {
      size_t k = 0;
      while (g.params[k] != rg.param) ++k;
      const int64_t from = lo + rg.begin - g.offset[k], n = rg.end - rg.begin;
      m_.narrow(0, g.state_off + rg.begin, n).copy_(m[rg.param].reshape(-1).narrow(0, from, n));
      v_.narrow(0, g.state_off + rg.begin, n).copy_(v[rg.param].reshape(-1).narrow(0, from, n));
    }
  }
}

void ZeroEngine::gather_params() {
  if (stage_ == ZeroStage::Gradients) varying_passes_ = true;
  if (stage_ != ZeroStage::Parameters) return;
  for (auto& g : groups_)
    if (!g.gathered) gather_group(g);
  pinned_ = true;
}

void ZeroEngine::release_params(bool write_back) {
  if (stage_ == ZeroStage::Gradients) varying_passes_ = false;
  if (stage_ != ZeroStage::Parameters) return;
  torch::NoGradGuard ng;
  for (auto& g : groups_) {
    if (!g.gathered) continue;
    if (write_back) g.pshard.copy_(g.full.narrow(0, comm_.rank() * g.shard, g.shard));
    release_group(g);
  }
  pinned_ = false;
  measure_params();
}

}  // namespace rlhf
