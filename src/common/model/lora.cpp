// lora.cpp — target names, the LoRA file attribute, fingerprints, attaching and merging adapters.
#include "common/model/lora.h"

#include <algorithm>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <zlib.h>

#include "common/core/check.h"
#include "common/core/strings.h"
#include "common/model/model.h"

namespace rlhf {

namespace {

constexpr EnumNames<LoraTarget, 10> kTargetNames{{{LoraTarget::Q, "q"}, {LoraTarget::K, "k"},
    {LoraTarget::V, "v"}, {LoraTarget::O, "o"}, {LoraTarget::Gate, "gate"}, {LoraTarget::Up, "up"},
    {LoraTarget::Down, "down"}, {LoraTarget::CAttn, "c_attn"}, {LoraTarget::CProj, "c_proj"},
    {LoraTarget::CFc, "c_fc"}}};

std::vector<LoraTarget> family_targets(Family f) {
  if (f == Family::GPT2) return {LoraTarget::CAttn, LoraTarget::CProj, LoraTarget::CFc};
  return {LoraTarget::Q, LoraTarget::K, LoraTarget::V, LoraTarget::O,
          LoraTarget::Gate, LoraTarget::Up, LoraTarget::Down};
}

std::string names_of(const std::vector<LoraTarget>& ts) {
  std::vector<std::string> n;
  for (LoraTarget t : ts) n.push_back(kTargetNames.name(t));
  return fmt::format("{}", fmt::join(n, ","));
}

TransformerImpl* trunk_of(torch::nn::Module& m) {
  if (auto* lm = dynamic_cast<CausalLMImpl*>(&m)) return lm->trunk.get();
  if (auto* sm = dynamic_cast<ScalarModelImpl*>(&m)) return sm->trunk.get();
  return nullptr;
}

}  // namespace

std::string lora_target_name(LoraTarget t) { return kTargetNames.name(t); }

std::vector<LoraTarget> parse_lora_targets(const std::string& text, Family f) {
  const std::vector<LoraTarget> all = family_targets(f);
  std::vector<LoraTarget> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty()) continue;
    if (item == "all") {
      out.insert(out.end(), all.begin(), all.end());
      continue;
    }
    LoraTarget t{};
    bool known = false;
    for (const auto& [v, n] : kTargetNames.items)
      if (item == n) t = v, known = true;
    RLHF_CHECK(known && std::count(all.begin(), all.end(), t) > 0,
               "model.lora.targets: '{}' is not a projection of a {} model (its projections: {}, "
               "or all)", item, family_name(f), names_of(all));
    out.push_back(t);
  }
  RLHF_CHECK(!out.empty(), "model.lora.targets is empty: name projections among {} (or all)",
             names_of(all));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

int64_t lora_parameter_count(const ModelConfig& c, const LoraOptions& opt) {
  if (!opt.enabled()) return 0;
  const int64_t C = c.d_model, F = c.d_ff, q = c.n_head * c.head_dim(), kv = c.n_kv_head * c.head_dim();
  int64_t per_layer = 0;  // sum of (in + out) over the adapted projections of one block
  for (LoraTarget t : parse_lora_targets(opt.targets, c.family)) {
    switch (t) {
      case LoraTarget::Q: per_layer += C + q; break;
      case LoraTarget::K:
      case LoraTarget::V: per_layer += C + kv; break;
      case LoraTarget::O: per_layer += q + C; break;
      case LoraTarget::Gate:
      case LoraTarget::Up: per_layer += C + F; break;
      case LoraTarget::Down: per_layer += F + C; break;
      case LoraTarget::CAttn: per_layer += C + 3 * C; break;
      case LoraTarget::CProj: per_layer += (C + C) + (F + C); break;  // attention and MLP outputs
      case LoraTarget::CFc: per_layer += C + F; break;
    }
  }
  return c.n_layer * opt.rank * per_layer;
}

nlohmann::json LoraInfo::to_json() const {
  return {{"rank", opt.rank}, {"alpha", opt.alpha}, {"dropout", opt.dropout},
          {"targets", opt.targets}, {"base", base}, {"base_fingerprint", base_fingerprint}};
}

LoraInfo LoraInfo::from_json(const nlohmann::json& j, const std::string& file) {
  LoraInfo i;
  try {
    i.opt.rank = j.at("rank").get<int64_t>();
    i.opt.alpha = j.at("alpha").get<double>();
    i.opt.dropout = j.at("dropout").get<double>();
    i.opt.targets = j.at("targets").get<std::string>();
    i.base = j.at("base").get<std::string>();
    i.base_fingerprint = j.at("base_fingerprint").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: attribute 'lora' is malformed: {}", file, e.what()));
  }
  RLHF_CHECK(i.opt.rank > 0 && i.opt.rank <= (1 << 20), "{}: attribute 'lora': rank {} out of range",
             file, i.opt.rank);
  return i;
}

std::string base_fingerprint(const std::map<std::string, torch::Tensor>& tensors) {
  uLong crc = crc32(0L, Z_NULL, 0);
  auto feed = [&](const void* p, size_t n) {
    crc = crc32(crc, static_cast<const Bytef*>(p), static_cast<uInt>(n));
  };
  for (const auto& [name, t] : tensors) {
    if (is_lora_name(name)) continue;
    feed(name.data(), name.size());
    for (int64_t d : t.sizes()) feed(&d, sizeof d);
    auto flat = t.detach().reshape({-1}).to(torch::kCPU, torch::kFloat);
    const int64_t n = flat.numel(), k = std::min<int64_t>(64, n);
    auto ends = torch::cat({flat.narrow(0, 0, k), flat.narrow(0, n - k, k)}).contiguous();
    feed(ends.data_ptr<float>(), static_cast<size_t>(ends.numel()) * sizeof(float));
  }
  return fmt::format("crc32:{:08x}:{}", static_cast<uint32_t>(crc), tensors.size());
}

bool is_lora_name(const std::string& n) {
  return n.find(".lora_A.") != std::string::npos || n.find(".lora_B.") != std::string::npos;
}

bool lora_owns(const std::string& name, const torch::Tensor& param) {
  return is_lora_name(name) || param.requires_grad() || name.rfind("score.", 0) == 0;
}

void attach_lora(torch::nn::Module& model, const LoraInfo& info) {
  TransformerImpl* trunk = trunk_of(model);
  RLHF_CHECK(trunk, "attach_lora: not a CausalLM or ScalarModel");
  LoraInfo resolved = info;
  const auto targets = parse_lora_targets(info.opt.targets, trunk->cfg.family);
  resolved.opt.targets = names_of(targets);
  const torch::Device dev = trunk->token_embedding_weight().device();
  for (auto& p : model.parameters(true)) p.set_requires_grad(false);
  trunk->add_lora(resolved, targets, dev);  // new adapters require grad
  if (auto* sm = dynamic_cast<ScalarModelImpl*>(&model))
    for (auto& p : sm->score->parameters()) p.set_requires_grad(true);
}

const LoraInfo* lora_info(torch::nn::Module& model) {
  TransformerImpl* trunk = trunk_of(model);
  return trunk && trunk->lora() ? &trunk->lora()->info : nullptr;
}

AdaptersOff::AdaptersOff(torch::nn::Module& model) {
  TransformerImpl* t = trunk_of(model);
  if (!t || !t->lora()) return;
  trunk_ = t;
  was_ = t->lora()->enabled;
  t->lora()->enabled = false;
}

AdaptersOff::~AdaptersOff() {
  if (trunk_) trunk_->lora()->enabled = was_;
}

void merge_lora_tensors(std::map<std::string, torch::Tensor>& tensors, const LoraOptions& opt,
                        const std::string& file) {
  const std::string a_suffix = ".lora_A.weight";
  std::vector<std::string> pairs;
  for (const auto& [name, t] : tensors)
    if (name.size() > a_suffix.size() &&
        name.compare(name.size() - a_suffix.size(), a_suffix.size(), a_suffix) == 0)
      pairs.push_back(name.substr(0, name.size() - a_suffix.size()));
  torch::NoGradGuard ng;
  for (const std::string& proj : pairs) {
    auto a = tensors.find(proj + ".lora_A.weight"), b = tensors.find(proj + ".lora_B.weight");
    auto w = tensors.find(proj + ".weight");
    RLHF_CHECK(b != tensors.end() && w != tensors.end(),
               "{}: adapter '{}' lacks its lora_B or base weight", file, proj);
    RLHF_CHECK(a->second.dim() == 2 && b->second.dim() == 2 && w->second.dim() == 2 &&
                   a->second.size(0) == b->second.size(1) &&
                   w->second.size(0) == b->second.size(0) && w->second.size(1) == a->second.size(1),
               "{}: adapter '{}' shapes A [{}] B [{}] do not fit weight [{}]", file, proj,
               shape_str(a->second), shape_str(b->second), shape_str(w->second));
    // W' = W + s · B A   ([out, r] x [r, in] -> [out, in]), in float64 then back to the dtype.
    auto delta = torch::matmul(b->second.to(torch::kDouble), a->second.to(torch::kDouble));
    w->second = (w->second.to(torch::kDouble) + delta * opt.scale()).to(w->second.scalar_type());
  }
  for (auto it = tensors.begin(); it != tensors.end();)
    it = is_lora_name(it->first) ? tensors.erase(it) : std::next(it);
}

}  // namespace rlhf
