#include "common/generate.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cstdlib>
#include <memory>

#ifdef RLHF_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/cuda.h>
#endif

#include "common/check.h"
#include "common/compat.h"

namespace rlhf {

std::pair<torch::Tensor, torch::Tensor> pad_rows(const std::vector<std::vector<int32_t>>& rows,
                                                 int64_t pad_id, bool left) {
  RLHF_CHECK(!rows.empty(), "pad_rows: no rows");
  size_t P = 0;
  for (const auto& r : rows) P = std::max(P, r.size());
  const int64_t B = static_cast<int64_t>(rows.size());
  auto tokens = torch::full({B, static_cast<int64_t>(P)}, pad_id, torch::kLong);  // [B, P]
  auto mask = torch::zeros({B, static_cast<int64_t>(P)}, torch::kBool);          // [B, P]
  auto* tp = tokens.data_ptr<int64_t>();
  auto* mp = mask.data_ptr<bool>();
  for (int64_t b = 0; b < B; ++b) {
    const auto& r = rows[b];
    const size_t off = left ? P - r.size() : 0;
    for (size_t i = 0; i < r.size(); ++i) {
      tp[b * P + off + i] = r[i];
      mp[b * P + off + i] = true;
    }
  }
  return {tokens, mask};
}

std::pair<torch::Tensor, torch::Tensor> left_pad(const std::vector<std::vector<int32_t>>& rows,
                                                 int64_t pad_id) {
  return pad_rows(rows, pad_id, /*left=*/true);
}

torch::Tensor sample_tokens(const torch::Tensor& logits, const SamplingConfig& cfg,
                            at::Generator& gen) {
  if (cfg.temperature == 0.0) return logits.argmax(-1);  // [B]
  auto l = logits.to(torch::kFloat) / cfg.temperature;    // [B, V]
  const int64_t V = l.size(-1);
  if (cfg.top_k > 0 && cfg.top_k < V) {
    auto kth = std::get<0>(l.topk(cfg.top_k, -1)).narrow(-1, cfg.top_k - 1, 1);  // [B, 1]
    l = l.masked_fill(l < kth, -INFINITY);
  }
  if (cfg.top_p < 1.0) {
    auto sorted = l.sort(-1, /*descending=*/true);
    auto sl = std::get<0>(sorted), si = std::get<1>(sorted);  // [B, V]
    auto sp = torch::softmax(sl, -1);
    auto before = sp.cumsum(-1) - sp;                 // mass strictly before each token
    auto drop_sorted = before >= cfg.top_p;           // first token always kept (before = 0)
    auto drop = torch::zeros_like(drop_sorted).scatter(-1, si, drop_sorted);
    l = l.masked_fill(drop, -INFINITY);
  }
  auto p = torch::softmax(l, -1);                     // [B, V]
  auto e = torch::empty_like(p).exponential_(1.0, gen);
  return (p / e).argmax(-1);                          // [B]
}

namespace {
at::Generator make_generator(const torch::Device& dev, uint64_t seed) {
  if (dev.is_cpu()) return at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Generator g = at::globalContext().defaultGenerator(dev).clone();
  g.set_current_seed(seed);
  return g;
}

#ifdef RLHF_WITH_CUDA
// The decode step captured once per generate() call in a CUDA graph and replayed for every new
// token: static input buffers (token, position, cache slot), attention over the whole cache with
// the slots not yet written masked out, logits written to one static buffer. No host sync per
// token; the captured kernels replace ~10 launches per layer.
class GraphedDecode {
 public:
  GraphedDecode(CausalLM& model, KVCache& cache, const torch::Tensor& key_mask, int64_t first_slot)
      : model_(model), cache_(cache), key_mask_(key_mask) {
    const auto dev = key_mask.device();
    const int64_t B = key_mask.size(0);
    auto lopt = torch::dtype(torch::kLong).device(dev);
    tok_ = torch::zeros({B, 1}, lopt);                       // [B, 1]
    pos_ = torch::zeros({B, 1}, lopt);                       // [B, 1]
    slot_ = torch::full({1}, first_slot, lopt);              // [1]
    slots_ = torch::arange(cache.capacity, lopt).unsqueeze(0);  // [1, capacity]
    torch::cuda::synchronize();  // the prefill (default stream) is done before the side stream
    auto stream = c10::cuda::getStreamFromPool();
    {
      c10::cuda::CUDAStreamGuard guard(stream);
      // Warm-up outside the capture (library handles, allocator); it writes slot first_slot,
      // which the first real step overwrites.
      for (int i = 0; i < 2; ++i) body();
      graph_.capture_begin();
      body();
      graph_.capture_end();
    }
    torch::cuda::synchronize();
  }
  // tok [B] int64, pos [B, 1] int64, slot: the cache slot of this token -> logits [B, V]
  // (the static buffer: valid until the next call).
  torch::Tensor step(const torch::Tensor& tok, const torch::Tensor& pos, int64_t slot) {
    tok_.copy_(tok.unsqueeze(1));
    pos_.copy_(pos);
    slot_.fill_(slot);
    graph_.replay();
    return logits_;
  }

 private:
  void body() {
    auto valid = key_mask_.logical_and(slots_.le(slot_));  // [B, capacity]
    auto h = model_->trunk->decode_static(tok_, pos_, valid, cache_, slot_);  // [B, 1, C]
    logits_ = model_->logits_from_hidden(h).squeeze(1);                       // [B, V]
  }
  CausalLM& model_;
  KVCache& cache_;
  torch::Tensor key_mask_, tok_, pos_, slot_, slots_, logits_;
  at::cuda::CUDAGraph graph_;
};
#endif
}  // namespace

bool cuda_graph_enabled(const SamplingConfig& cfg, const torch::Device& dev) {
  if (!cfg.cuda_graph || !dev.is_cuda()) return false;
  const char* env = std::getenv("RLHF_CUDA_GRAPH");
#ifdef RLHF_WITH_CUDA
  return !(env && std::string(env) == "0");
#else
  (void)env;
  return false;
#endif
}

namespace {
struct ModeRestore {
  torch::nn::Module& m;
  bool was_training;
  ~ModeRestore() { m.train(was_training); }
};
}  // namespace

GenerateOutput generate(CausalLM& model, const torch::Tensor& prompts_in,
                        const torch::Tensor& prompt_mask_in, const SamplingConfig& cfg,
                        uint64_t seed) {
  torch::NoGradGuard ng;
  ModeRestore restore{*model, model->is_training()};
  model->eval();
  const ModelConfig& mc = model->cfg;
  RLHF_CHECK(prompts_in.dim() == 2 && prompt_mask_in.sizes() == prompts_in.sizes(),
             "generate: prompts and prompt_mask must both be [B, P]");
  RLHF_CHECK(cfg.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0, got {}",
             cfg.max_new_tokens);
  RLHF_CHECK(cfg.temperature >= 0, "generate: temperature must be >= 0, got {}", cfg.temperature);
  RLHF_CHECK(cfg.top_p > 0 && cfg.top_p <= 1, "generate: top_p must be in (0, 1], got {}", cfg.top_p);
  RLHF_CHECK(cfg.top_k >= 0, "generate: top_k must be >= 0, got {}", cfg.top_k);
  RLHF_CHECK(cfg.eos_check_every > 0, "generate: eos_check_every must be > 0");
  const auto params = model->parameters();
  const torch::Device dev = params.at(0).device();
  auto prompts = prompts_in.to(dev, torch::kLong);
  auto prompt_mask = prompt_mask_in.to(dev, torch::kBool);
  const int64_t B = prompts.size(0), P = prompts.size(1), N = cfg.max_new_tokens, cap = P + N;
  RLHF_CHECK(B > 0 && P > 0, "generate: empty prompt batch [{}, {}]", B, P);
  RLHF_CHECK(cap <= mc.max_seq_len,
             "generate: prompt length {} + max_new_tokens {} exceeds the model's max_seq_len {}", P,
             N, mc.max_seq_len);
  RLHF_CHECK(prompt_mask.any(1).all().item<bool>(),
             "generate: every prompt row needs at least one real token (mask row all false)");

  GenerateOutput out;
  out.prompt_len = P;
  auto ac = compat::autocast_state();
  auto cache_dtype = (dev.is_cuda() && ac.enabled) ? ac.dtype : params.at(0).scalar_type();
  KVCache cache = KVCache::allocate(mc, B, cap, torch::dtype(cache_dtype).device(dev));
  auto long_opt = torch::dtype(torch::kLong).device(dev);
  auto tokens = torch::full({B, cap}, cfg.pad_id, long_opt);                  // [B, P+N]
  tokens.narrow(1, 0, P).copy_(prompts);
  auto key_mask = torch::ones({B, cap}, torch::dtype(torch::kBool).device(dev));  // [B, P+N]
  key_mask.narrow(1, 0, P).copy_(prompt_mask);
  auto resp_mask = torch::zeros({B, std::max<int64_t>(N, 1)}, torch::dtype(torch::kBool).device(dev));
  auto logprobs = torch::zeros({B, std::max<int64_t>(N, 1)}, torch::dtype(torch::kFloat).device(dev));
  auto finished = torch::zeros({B}, torch::dtype(torch::kBool).device(dev));  // [B]
  const bool use_eos = cfg.stop_at_eos && cfg.eos_id >= 0;
  at::Generator gen = make_generator(dev, seed);

  int64_t n = 0;
  if (N > 0) {
    auto pos = positions_from_mask(prompt_mask);                       // [B, P]
    auto h = model->trunk(prompts, pos, key_mask.narrow(1, 0, P), &cache, 0);  // [B, P, C]
    auto logits = model->logits_from_hidden(h.narrow(1, P - 1, 1)).squeeze(1);  // [B, V]
    auto next_pos = pos.select(1, P - 1).unsqueeze(1) + 1;             // [B, 1]
#ifdef RLHF_WITH_CUDA
    std::unique_ptr<GraphedDecode> graphed;
    if (N > 1 && cuda_graph_enabled(cfg, dev))
      graphed = std::make_unique<GraphedDecode>(model, cache, key_mask, P);
#endif
    for (int64_t t = 0; t < N; ++t) {
      auto tok = sample_tokens(logits, cfg, gen);                             // [B]
      auto lp = torch::log_softmax(logits, -1).gather(1, tok.unsqueeze(1)).squeeze(1);  // [B]
      auto alive = finished.logical_not();
      tok = torch::where(alive, tok, torch::full_like(tok, cfg.pad_id));
      lp = torch::where(alive, lp, torch::zeros_like(lp));
      tokens.select(1, P + t).copy_(tok);
      logprobs.select(1, t).copy_(lp);
      resp_mask.select(1, t).copy_(alive);
      n = t + 1;
      if (use_eos) {
        finished = finished.logical_or(tok == cfg.eos_id);
        if ((t + 1) % cfg.eos_check_every == 0 && finished.all().item<bool>()) break;
      }
      if (t + 1 == N) break;
#ifdef RLHF_WITH_CUDA
      if (graphed) {
        logits = graphed->step(tok, next_pos, P + t);                         // [B, V]
        next_pos = next_pos + 1;
        continue;
      }
#endif
      h = model->trunk(tok.unsqueeze(1), next_pos, key_mask.narrow(1, 0, P + t + 1), &cache,
                       P + t);                                                 // [B, 1, C]
      logits = model->logits_from_hidden(h).squeeze(1);                       // [B, V]
      next_pos = next_pos + 1;
    }
  }
  out.new_tokens = n;
  out.tokens = tokens.narrow(1, 0, P + n).contiguous();
  out.response_mask = resp_mask.narrow(1, 0, n).contiguous();
  out.logprobs = logprobs.narrow(1, 0, n).contiguous();
  out.attention_mask = torch::cat({prompt_mask, out.response_mask}, 1);
  return out;
}

}  // namespace rlhf
