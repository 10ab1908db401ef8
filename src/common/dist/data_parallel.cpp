// data_parallel.cpp — the data-parallel helpers declared in dist.h (broadcast_parameters,
// check_consistency, all_reduce_gradients), over the Communicator's collectives.
#include <algorithm>

#include "common/core/check.h"
#include "common/dist/dist.h"

namespace rlhf {

// ---- data-parallel helpers ---------------------------------------------------------------

void broadcast_parameters(Communicator& comm, const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard ng;
  for (const auto& p : params) {
    torch::Tensor t = p.detach();  // shares storage with the parameter
    if (t.is_contiguous()) {
      comm.broadcast(t);
    } else {
      torch::Tensor c = t.contiguous();
      comm.broadcast(c);
      t.copy_(c);
    }
  }
}

// 1-based line `i` of `text`, or "<end of text>".
static std::string line_at(const std::string& text, size_t i) {
  size_t start = 0;
  for (size_t k = 1; k < i; ++k) {
    start = text.find('\n', start);
    if (start == std::string::npos) return "<end of text>";
    ++start;
  }
  if (start >= text.size() && i > 1) return "<end of text>";
  size_t end = text.find('\n', start);
  std::string line = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
  return line.size() > 200 ? line.substr(0, 200) + "..." : line;
}

static size_t first_differing_line(const std::string& a, const std::string& b) {
  size_t line = 1;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (a[i] != b[i]) return line;
    if (a[i] == '\n') ++line;
  }
  return line;  // one is a prefix of the other: they differ from this line on
}

void check_consistency(Communicator& comm, const std::string& config_text, int64_t n_params) {
  if (comm.world_size() == 1) return;
  // Every rank gathers the same data and runs the same comparison, so either all ranks throw
  // (the same message) or none does: a throw on some ranks only would leave the others blocked
  // in their next collective until run_main's MPI_Abort tears them down.
  const auto texts = comm.all_gather_string(config_text);
  const auto counts = comm.all_gather_string(std::to_string(n_params));
  for (int r = 1; r < comm.world_size(); ++r) {
    if (counts[r] != counts[0]) {
      throw Error(fmt::format(
          "ranks disagree at start: rank 0 has {} parameters, rank {} has {} (same model config "
          "and checkpoint on every rank?)",
          counts[0], r, counts[r]));
    }
    if (texts[r] != texts[0]) {
      const size_t line = first_differing_line(texts[0], texts[r]);
      throw Error(fmt::format(
          "ranks disagree at start: config line {} is '{}' on rank 0 but '{}' on rank {} (are "
          "all ranks given the same config file and --set overrides?)",
          line, line_at(texts[0], line), line_at(texts[r], line), r));
    }
  }
}

void all_reduce_gradients(Communicator& comm, const std::vector<torch::Tensor>& params,
                          double bucket_mb) {
  if (comm.world_size() == 1 && !comm.nccl_ready()) return;
  torch::NoGradGuard ng;
  const int64_t bucket_bytes = std::max<int64_t>(1, static_cast<int64_t>(bucket_mb * 1024 * 1024));
  std::vector<torch::Tensor> bucket;
  int64_t bytes = 0;
  auto flush = [&]() {
    if (bucket.empty()) return;
    const int64_t n = static_cast<int64_t>(bucket.size());
    std::vector<torch::Tensor> flats;
    int64_t total = 0;
    for (auto& p : bucket) {
      flats.push_back(p.grad().defined() ? p.grad().reshape(-1)
                                         : torch::zeros({p.numel()}, p.options()));
      total += p.numel();
    }
    // One extra element per parameter: 1 if this rank has its gradient. The sum says how many
    // ranks do (small integers are exact even in bf16), so "no rank has one" is decided
    // identically everywhere.
    std::vector<float> has(n);
    for (int64_t i = 0; i < n; ++i) has[i] = bucket[i].grad().defined() ? 1.f : 0.f;
    flats.push_back(torch::tensor(has).to(bucket[0].options()));
    torch::Tensor flat = torch::cat(flats);  // [total + n]
    comm.all_reduce(flat, ReduceOp::Sum);
    flat.narrow(0, 0, total).div_(comm.world_size());
    torch::Tensor ranks_with_grad = flat.narrow(0, total, n).to(torch::kCPU);  // [n]
    int64_t off = 0;
    for (int64_t i = 0; i < n; ++i) {
      auto& p = bucket[i];
      auto slice = flat.narrow(0, off, p.numel()).view(p.sizes());
      off += p.numel();
      if (ranks_with_grad[i].item<double>() < 0.5) continue;  // no rank has a gradient
      if (p.grad().defined()) {
        p.mutable_grad().copy_(slice);
      } else {
        p.mutable_grad() = slice.clone();
      }
    }
    bucket.clear();
    bytes = 0;
  };
  for (const auto& p : params) {
    // Group only same-dtype/device tensors into one flat buffer.
    if (!bucket.empty() && (bucket[0].scalar_type() != p.scalar_type() ||
                            bucket[0].device() != p.device()))
      flush();
    bucket.push_back(p);
    bytes += p.numel() * p.element_size();
    if (bytes >= bucket_bytes) flush();
  }
  flush();
}

}  // namespace rlhf
