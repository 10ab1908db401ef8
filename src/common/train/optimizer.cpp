#include "common/train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/core/check.h"
#include "common/core/compat.h"

namespace rlhf {

std::vector<NamedParam> named_params(torch::nn::Module& m, const std::string& prefix) {
  std::vector<NamedParam> out;
  for (const auto& kv : m.named_parameters(true)) {
    if (kv.value().requires_grad()) out.push_back({prefix + kv.key(), kv.value()});
  }
  return out;
}

std::vector<torch::Tensor> tensors_of(const std::vector<NamedParam>& ps) {
  std::vector<torch::Tensor> out;
  for (const auto& p : ps) out.push_back(p.param);
  return out;
}

AdamW::AdamW(std::vector<NamedParam> params, double beta1, double beta2, double eps,
             double weight_decay)
    : params_(std::move(params)), b1_(beta1), b2_(beta2), eps_(eps), wd_(weight_decay) {
  for (const auto& p : params_) {
    m_.push_back(torch::zeros_like(p.param, torch::MemoryFormat::Contiguous));
    v_.push_back(torch::zeros_like(p.param, torch::MemoryFormat::Contiguous));
    decay_.push_back(p.param.dim() >= 2);  // no decay on biases and norm gains
  }
}

AdamW::~AdamW() = default;

void AdamW::shard(ZeroStage stage, Communicator& comm, torch::nn::Module& model) {
  RLHF_CHECK(!zero_ && step_ == 0, "AdamW::shard: call once, before the first step");
  if (stage == ZeroStage::Off) return;
  zero_ = std::make_unique<ZeroEngine>(stage, comm, model, tensors_of(params_));
  m_.assign(params_.size(), torch::Tensor());  // the engine holds this rank's shards
  v_.assign(params_.size(), torch::Tensor());
}

ZeroStepResult AdamW::step_sharded(double lr, double grad_clip, bool loss_finite) {
  RLHF_CHECK(zero_ != nullptr, "AdamW::step_sharded: the optimizer is not sharded");
  return zero_->step(hyper(), lr, grad_clip, loss_finite, step_);
}

void AdamW::gather_full() {
  if (!zero_) return;
  zero_->gather_moments(m_, v_);
  zero_->gather_params();
  gathered_ = true;
}

void AdamW::release_full() {
  if (!zero_) return;
  zero_->release_params(/*write_back=*/true);
  m_.assign(params_.size(), torch::Tensor());
  v_.assign(params_.size(), torch::Tensor());
  gathered_ = false;
}

void AdamW::record_held_grads() {
  int64_t bytes = 0;
  for (const auto& p : params_)
    if (p.param.grad().defined()) bytes += p.param.grad().nbytes();
  held_grads_ = std::max(held_grads_, bytes);
}

HeldBytes AdamW::held() const {
  if (zero_) return zero_->held();
  HeldBytes h;
  for (size_t i = 0; i < params_.size(); ++i) {
    h.optimizer_state += m_[i].nbytes() + v_[i].nbytes();
    h.params += params_[i].param.nbytes();
  }
  h.grads = held_grads_;
  h.peak_grads = held_grads_;  // stage 0: the full gradients live from backward to the step
  return h;
}

void AdamW::step(double lr) {
  RLHF_CHECK(!zero_, "AdamW::step on a sharded optimizer (use optimizer_step)");
  torch::NoGradGuard ng;
  ++step_;
  const double bc1 = 1.0 - std::pow(b1_, static_cast<double>(step_));
  const double bc2 = 1.0 - std::pow(b2_, static_cast<double>(step_));
  const double step_size = lr / bc1;
  const double bc2_sqrt = std::sqrt(bc2);
  if (allow_fused && !params_.empty() && params_[0].param.is_cuda() && step_fused(lr)) return;
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor p = params_[i].param;
    const torch::Tensor& g = p.grad();
    if (!g.defined()) continue;
    if (decay_[i] && wd_ > 0) p.mul_(1.0 - lr * wd_);
    m_[i].mul_(b1_).add_(g, 1.0 - b1_);
    v_[i].mul_(b2_).addcmul_(g, g, 1.0 - b2_);
    torch::Tensor denom = (v_[i].sqrt() / bc2_sqrt).add_(eps_);
    p.addcdiv_(m_[i], denom, -step_size);
  }
}

// CUDA: one multi-tensor kernel per weight-decay group instead of ~6 kernels per parameter.
bool AdamW::step_fused(double lr) {
  if (!step_t_.defined() || step_t_.device() != params_[0].param.device())
    step_t_ = torch::zeros({}, torch::dtype(torch::kFloat).device(params_[0].param.device()));
  for (const auto& np : params_)
    if (!np.param.is_cuda() || np.param.scalar_type() != torch::kFloat) return false;
  step_t_.fill_(static_cast<double>(step_));
  for (bool decay : {true, false}) {
    std::vector<torch::Tensor> p, g, m, v;
    for (size_t i = 0; i < params_.size(); ++i) {
      const torch::Tensor& pi = params_[i].param;
      if (decay_[i] != decay || !pi.grad().defined()) continue;
      p.push_back(pi);
      g.push_back(pi.grad());
      m.push_back(m_[i]);
      v.push_back(v_[i]);
    }
    if (p.empty()) continue;
    const double wd = decay ? wd_ : 0.0;
    // Unavailable (libtorch 1.x) means unavailable for both groups: nothing was updated.
    if (!compat::fused_adamw_step(p, g, m, v, step_t_, lr, b1_, b2_, wd, eps_)) return false;
  }
  return true;
}

void AdamW::zero_grad() {
  for (auto& p : params_) {
    if (p.param.grad().defined()) {
      p.param.mutable_grad().detach_();
      p.param.mutable_grad().zero_();
    }
  }
}

void AdamW::save(H5File& f, const std::string& prefix) const {
  RLHF_CHECK(!zero_ || gathered_, "AdamW::save: sharded state not gathered (gather_full first)");
  for (size_t i = 0; i < params_.size(); ++i) {
    f.write_tensor(prefix + "/" + params_[i].name + "/exp_avg", m_[i]);
    f.write_tensor(prefix + "/" + params_[i].name + "/exp_avg_sq", v_[i]);
  }
  f.set_attr(prefix + "_step", step_);
}

void AdamW::load(const H5File& f, const std::string& prefix) {
  RLHF_CHECK(!zero_ || gathered_, "AdamW::load: sharded state not gathered (gather_full first)");
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> full_m(params_.size()), full_v(params_.size());  // sharded: read
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::vector<int64_t> shape = params_[i].param.sizes().vec();
    for (auto& [suffix, dst] : {std::pair<const char*, torch::Tensor*>{"exp_avg", zero_ ? &full_m[i] : &m_[i]},
                                {"exp_avg_sq", zero_ ? &full_v[i] : &v_[i]}}) {
      const std::string name = prefix + "/" + params_[i].name + "/" + suffix;
      RLHF_CHECK(f.has(name), "{}: optimizer state '{}' missing (checkpoint from another model?)",
                 f.path(), name);
      torch::Tensor t = f.read_tensor(name);
      RLHF_CHECK(t.sizes() == torch::IntArrayRef(shape),
                 "{}: optimizer state '{}' has shape {}, expected {}", f.path(), name,
                 c10::str(t.sizes()), c10::str(torch::IntArrayRef(shape)));
      if (zero_) *dst = t.to(params_[i].param.options());
      else dst->copy_(t);
    }
  }
  if (zero_) zero_->load_moments(full_m, full_v);
  step_ = f.attr_int(prefix + "_step");
}

double lr_at(int64_t step, int64_t max_steps, int64_t warmup_steps, double base_lr,
             double min_lr_ratio) {
  if (warmup_steps > 0 && step < warmup_steps)
    return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  const double span = std::max<int64_t>(1, max_steps - warmup_steps);
  const double progress = std::min(1.0, static_cast<double>(step - warmup_steps) / span);
  const double min_lr = base_lr * min_lr_ratio;
  return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

StepResult optimizer_step(AdamW& opt, Communicator& comm, double lr, double grad_clip,
                          double bucket_mb, bool loss_finite) {
  torch::NoGradGuard ng;
  if (opt.zero()) {
    const ZeroStepResult z = opt.step_sharded(lr, grad_clip, loss_finite);
    compat::clear_autocast_cache();
    return {z.grad_norm, z.skipped};
  }
  opt.record_held_grads();
  std::vector<torch::Tensor> params = tensors_of(opt.params());
  all_reduce_gradients(comm, params, bucket_mb);
  // Global L2 norm over all (already averaged) gradients: identical on every rank.
  std::vector<torch::Tensor> sq;
  for (auto& p : params)
    if (p.grad().defined()) sq.push_back(p.grad().to(torch::kFloat).pow(2).sum());
  StepResult r;
  r.grad_norm = sq.empty() ? 0.0 : torch::stack(sq).sum().sqrt().item<double>();
  // Every rank saw the same averaged gradients, but the loss flag is per rank: agree on it.
  const double bad = comm.all_reduce_scalar(loss_finite ? 0.0 : 1.0, ReduceOp::Max);
  if (!std::isfinite(r.grad_norm) || bad > 0) {
    r.skipped = true;
    opt.zero_grad();
    return r;
  }
  if (grad_clip > 0 && r.grad_norm > grad_clip) {
    const double scale = grad_clip / (r.grad_norm + 1e-6);
    for (auto& p : params)
      if (p.grad().defined()) p.mutable_grad().mul_(scale);
  }
  opt.step(lr);
  opt.zero_grad();
  compat::clear_autocast_cache();  // bf16 weight copies are stale after the update
  return r;
}

int64_t accumulation_steps(int64_t global_samples, int64_t micro_batch, int world_size,
                           const std::string& what, int64_t rows_per_sample) {
  const int64_t rows = global_samples * rows_per_sample, per_step = micro_batch * world_size;
  if (rows % per_step == 0) return rows / per_step;
  // The error ends with the keys that fix it, with values that work.
  std::string fix;
  if (rows % world_size == 0) {
    const int64_t per_rank = rows / world_size;
    int64_t d = std::min(micro_batch, per_rank);
    while (per_rank % d != 0) --d;
    fix = fmt::format("set train.micro_batch_size to a divisor of the {} rows per rank (e.g. {})", per_rank, d);
  } else {
    fix = fmt::format("run on a number of ranks that divides its {} rows", rows);
  }
  const int64_t multiple = per_step / std::gcd(per_step, rows_per_sample);
  throw Error(fmt::format("{} = {}{} is not divisible by train.micro_batch_size ({}) x ranks ({}) = {}: {}, "
                          "or set {} to a multiple of {}", what, global_samples,
                          rows_per_sample > 1 ? fmt::format(" ({} rows, {} per sample)", rows, rows_per_sample) : "",
                          micro_batch, world_size, per_step, fix, what, multiple));
}

}  // namespace rlhf
