// bench_common.h — shared pieces of the benchmark binaries (bench_generate, bench_train,
// bench_ppo): command-line flags for the model / device / dtype, model presets, device timing,
// the matmul peak, parameter and FLOP counts, and peak-memory statistics.
//
// Contract:
// - Header-only; used only by bench/*.cpp (one process, one device; never under mpirun).
// - Model flags: --preset sets every field, explicit --n-layer/... flags then override it.
// - Timing: Timer::seconds() synchronises the device first (CUDA kernels are asynchronous), so
//   a measured interval covers all work queued before it ends.
// - Peak memory: CUDA builds (RLHF_WITH_NCCL defined, i.e. a CUDA libtorch) read the c10 CUDA
//   caching allocator's statistics (same counter as torch.cuda.max_memory_allocated); CPU
//   builds and CPU devices report null.
// - Every figure printed is measured in the same process; nothing is hard-coded.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>
#include <ATen/CPUGeneratorImpl.h>

#include "common/core/check.h"
#include "common/core/memory.h"
#include "common/model/generate.h"
#include "common/model/model.h"

namespace rlhf::bench {

enum class Dtype { FP32, BF16 };
enum class Preset { None, Tiny, GPT2_124M, GPT2_1_5B };

inline std::string dtype_name(Dtype d) { return d == Dtype::BF16 ? "bf16" : "fp32"; }

// Flags shared by every benchmark. Model fields start at -1 = "take from the preset".
struct CommonArgs {
  std::string preset = "tiny";
  std::string family;  // "" = from the preset
  int64_t n_layer = -1, d_model = -1, n_head = -1, n_kv_head = -1, d_ff = -1, vocab = -1,
          max_seq_len = -1;
  std::string device = "cpu";
  std::string dtype = "fp32";
  int64_t warmup = 1, iters = 3;
  uint64_t seed = 1234;
  int threads = 0;  // 0 = every core this process may use
  bool checkpointing = false;  // activation checkpointing (recompute blocks in backward)
  int cuda_graph = 1;          // generation: 0 = eager decode (older spelling of --decode eager)
  std::string decode = "auto";  // generation: auto | eager | static (rlhf::DecodeMode)
  int64_t attend_bucket = 64;   // generation, static decode: attention length rounded up to this
};

// The sampling config's decode fields from the flags.
inline void apply_decode_flags(const CommonArgs& a, rlhf::SamplingConfig& sc) {
  sc.decode = rlhf::kDecodeModeNames.parse(a.decode, "--decode");
  if (a.cuda_graph == 0) sc.decode = rlhf::DecodeMode::Eager;
  sc.attend_bucket = a.attend_bucket;
}

inline void add_common_flags(CLI::App& app, CommonArgs& a) {
  app.add_option("--preset", a.preset, "model preset (explicit model flags override it)")
      ->check(CLI::IsMember({"tiny", "gpt2-124m", "gpt2-1.5b"}))
      ->capture_default_str();
  app.add_option("--family", a.family, "gpt2 | llama (default: the preset's)")
      ->check(CLI::IsMember({"gpt2", "llama"}));
  app.add_option("--n-layer", a.n_layer, "transformer blocks")->check(CLI::PositiveNumber);
  app.add_option("--d-model", a.d_model, "hidden size")->check(CLI::PositiveNumber);
  app.add_option("--n-head", a.n_head, "attention heads")->check(CLI::PositiveNumber);
  app.add_option("--n-kv-head", a.n_kv_head, "key/value heads (llama GQA; default = n-head)")
      ->check(CLI::PositiveNumber);
  app.add_option("--d-ff", a.d_ff, "MLP inner size")->check(CLI::PositiveNumber);
  app.add_option("--vocab", a.vocab, "vocabulary size")->check(CLI::PositiveNumber);
  app.add_option("--max-seq-len", a.max_seq_len, "context length")->check(CLI::PositiveNumber);
  app.add_option("--device", a.device, "cpu | cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--dtype", a.dtype, "fp32 | bf16")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  app.add_option("--warmup", a.warmup, "untimed iterations first")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--iters", a.iters, "timed iterations")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--seed", a.seed, "seed for weights, data and sampling")->capture_default_str();
  app.add_option("--threads", a.threads, "torch intra-op threads (0 = all usable cores)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--checkpointing", a.checkpointing,
               "activation checkpointing: recompute each block in backward");
  app.add_option("--cuda-graph", a.cuda_graph, "generation: 0 = eager decode (same as --decode eager)")
      ->check(CLI::Range(0, 1))
      ->capture_default_str();
  app.add_option("--decode", a.decode,
                 "generation: auto (static + CUDA graphs on CUDA, eager on CPU) | eager | static")
      ->check(CLI::IsMember({"auto", "eager", "static"}))
      ->capture_default_str();
  app.add_option("--attend-bucket", a.attend_bucket,
                 "generation, static decode: attended cache slots rounded up to a multiple of this")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

// The preset's config, then every explicitly given field on top; validated.
inline ModelConfig model_config(const CommonArgs& a) {
  ModelConfig c;  // "tiny" = the library defaults (gpt2, 2 x 128, vocab 259, 256 context)
  if (a.preset == "gpt2-124m" || a.preset == "gpt2-1.5b") {
    const bool xl = a.preset == "gpt2-1.5b";
    c.family = Family::GPT2;
    c.vocab_size = 50257;
    c.max_seq_len = 1024;
    c.n_layer = xl ? 48 : 12;
    c.d_model = xl ? 1600 : 768;
    c.n_head = c.n_kv_head = xl ? 25 : 12;
    c.d_ff = 4 * c.d_model;
  }
  if (!a.family.empty()) c.family = parse_family(a.family);
  auto set = [](int64_t v, int64_t& dst) {
    if (v > 0) dst = v;
  };
  set(a.n_layer, c.n_layer);
  set(a.d_model, c.d_model);
  set(a.n_head, c.n_head);
  set(a.d_ff, c.d_ff);
  set(a.vocab, c.vocab_size);
  set(a.max_seq_len, c.max_seq_len);
  c.n_kv_head = a.n_kv_head > 0 ? a.n_kv_head : c.n_head;
  c.dropout = 0.0;
  c.activation_checkpointing = a.checkpointing;
  c.validate();
  return c;
}

// Sets the torch thread count explicitly and returns it.
inline int set_threads(int requested) {
  int n = requested;
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(n);
  return torch::get_num_threads();
}

inline torch::Device resolve_device(const std::string& name) {
  if (name == "cpu") return torch::Device(torch::kCPU);
  RLHF_CHECK(torch::cuda::is_available(),
             "--device cuda: no CUDA device is visible to this libtorch (CPU-only build, or no "
             "GPU); use --device cpu");
  return torch::Device(torch::kCUDA, 0);
}

inline Dtype parse_dtype(const std::string& s) { return s == "bf16" ? Dtype::BF16 : Dtype::FP32; }

inline void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index());
}

struct Timer {
  explicit Timer(torch::Device d) : dev(d) { reset(); }
  void reset() {
    sync(dev);
    t0 = std::chrono::steady_clock::now();
  }
  double seconds() const {
    sync(dev);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  torch::Device dev;
  std::chrono::steady_clock::time_point t0;
};

// Peak-memory statistics of the CUDA caching allocator (null on CPU or in CPU builds): the
// CUDA half of common/core/memory.h (the benchmarks report no CPU figure).
inline nlohmann::json peak_memory_bytes(const torch::Device& d) {
  const PeakMemory p = peak_memory(d);
  if (!d.is_cuda() || p.bytes < 0) return nullptr;
  return p.bytes;
}

// Measured matmul throughput: C = A @ B with A, B [n, n] of `dtype` on `dev`. Runs `iters`
// matmuls back to back per repeat, 3 repeats after one warm-up matmul, and returns the best
// repeat's FLOP/s (2 n^3 per matmul). This is the practical peak the MFU is relative to.
inline double matmul_peak_flops(const torch::Device& dev, torch::ScalarType dtype, int64_t n,
                                int iters) {
  torch::NoGradGuard ng;
  auto opt = torch::dtype(dtype).device(dev);
  auto a = torch::randn({n, n}, opt);  // [n, n]
  auto b = torch::randn({n, n}, opt);  // [n, n]
  auto c = torch::matmul(a, b);        // [n, n] warm-up (allocations, kernel selection)
  double best = 0;
  for (int r = 0; r < 3; ++r) {
    Timer t(dev);
    for (int i = 0; i < iters; ++i) c = torch::matmul(a, b);
    const double s = t.seconds();
    best = std::max(best, 2.0 * n * n * n * iters / s);
  }
  return best;
}

inline int64_t count_params(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

// Parameters that take part in matrix multiplies per token ("N" in 6·N·tokens): every parameter
// minus tables that are only gathered (GPT-2's position embeddings; an untied input embedding).
// A tied embedding counts once, as the LM head's matmul.
inline int64_t matmul_params(torch::nn::Module& m, const ModelConfig& c) {
  int64_t n = count_params(m);
  if (c.family == Family::GPT2) n -= c.max_seq_len * c.d_model;      // wpe
  if (!c.tie_embeddings) n -= c.vocab_size * c.d_model;              // input embedding lookup
  return n;
}

// Training FLOPs per token (forward + backward), Kaplan et al. 2020 / PaLM appendix B:
//   6·N  (weight matmuls: 2 forward + 4 backward per parameter)
// + 12·n_layer·d_model·T  (attention scores QKᵀ and the weighted sum AV over a length-T context,
//   2·2·T·d_model forward per layer, x3 for forward + backward; counted without the causal
//   halving, as PaLM and nanoGPT do).
inline double train_flops_per_token(int64_t n_matmul_params, const ModelConfig& c, int64_t T) {
  return 6.0 * static_cast<double>(n_matmul_params) +
         12.0 * static_cast<double>(c.n_layer * c.d_model) * static_cast<double>(T);
}

inline nlohmann::json model_json(const ModelConfig& c, const CommonArgs& a, int64_t n_params) {
  nlohmann::json j = c.to_json();
  j["preset"] = a.preset;
  j["n_params"] = n_params;
  return j;
}

// 1-minute load average from /proc/loadavg (null elsewhere): CPU figures taken while other
// processes compete for the cores are not comparable, so every result records it.
inline nlohmann::json load_average() {
  std::ifstream f("/proc/loadavg");
  double l1 = 0;
  if (f >> l1) return l1;
  return nullptr;
}

inline nlohmann::json common_json(const CommonArgs& a, const torch::Device& dev, int threads) {
  rlhf::SamplingConfig sc;
  apply_decode_flags(a, sc);
  const bool stat = rlhf::resolved_decode_mode(sc, dev) == rlhf::DecodeMode::Static;
  return {{"decode", rlhf::kDecodeModeNames.name(stat ? rlhf::DecodeMode::Static : rlhf::DecodeMode::Eager)}, {"cuda_graph", rlhf::cuda_graph_enabled(sc, dev)},
          {"device", dev.str()},    {"dtype", a.dtype},        {"warmup", a.warmup},
          {"iters", a.iters},       {"seed", a.seed},          {"threads", threads},
          {"torch_version", TORCH_VERSION}, {"load_avg_1m_at_end", load_average()},
          {"checkpointing", a.checkpointing}, {"attend_bucket", a.attend_bucket}};
}

// Random token ids in [0, vocab): [B, T] int64 on `dev` from a seeded CPU generator.
inline torch::Tensor random_tokens(int64_t B, int64_t T, int64_t vocab, uint64_t seed,
                                   const torch::Device& dev) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randint(vocab, {B, T}, gen, torch::dtype(torch::kLong)).to(dev);  // [B, T]
}

}  // namespace rlhf::bench
