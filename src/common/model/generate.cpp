#include "common/model/generate.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cstdlib>
#include <map>
#include <memory>

#ifdef RLHF_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/cuda.h>
#endif

#include "common/core/check.h"
#include "common/core/compat.h"
#include "common/model/rollout_engine.h"

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

namespace {
// The filtered sampling distribution: logits [B, V] -> probabilities [B, V] float after the
// temperature, top-k and top-p filters (temperature > 0).
torch::Tensor sampling_probs(const torch::Tensor& logits, const SamplingConfig& cfg) {
  auto l = logits.to(torch::kFloat) / cfg.temperature;  // [B, V]
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
  return torch::softmax(l, -1);  // [B, V]
}

}  // namespace

// Exponential race: argmax p_i / E_i with E_i ~ Exp(1) draws i with probability p_i.
torch::Tensor draw_tokens(const torch::Tensor& logits, const SamplingConfig& cfg,
                          const torch::Tensor& noise) {
  if (cfg.temperature == 0.0) return logits.argmax(-1);  // [B]
  return (sampling_probs(logits, cfg) / noise).argmax(-1);
}

torch::Tensor sampled_logprobs(const torch::Tensor& logits, const torch::Tensor& tokens,
                               const SamplingConfig& cfg) {
  const double temp = cfg.temperature > 0 ? cfg.temperature : 1.0;
  auto scaled = temp == 1.0 ? logits : logits.to(torch::kFloat) / temp;          // [B, V]
  return torch::log_softmax(scaled, -1).gather(1, tokens.unsqueeze(1)).squeeze(1);  // [B]
}

void check_row_limits(const SamplingConfig& cfg, int64_t rows) {
  if (cfg.row_max_new_tokens.empty()) return;
  RLHF_CHECK(static_cast<int64_t>(cfg.row_max_new_tokens.size()) == rows,
             "generate: {} row_max_new_tokens for {} prompt rows", cfg.row_max_new_tokens.size(), rows);
  for (int64_t n : cfg.row_max_new_tokens)
    RLHF_CHECK(n >= 1 && n <= cfg.max_new_tokens,
               "generate: a row_max_new_tokens of {} is outside [1, max_new_tokens = {}]", n,
               cfg.max_new_tokens);
}

void check_sampling(const SamplingConfig& cfg) {
  RLHF_CHECK(cfg.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0, got {}",
             cfg.max_new_tokens);
  RLHF_CHECK(cfg.temperature >= 0, "generate: temperature must be >= 0, got {}", cfg.temperature);
  RLHF_CHECK(cfg.top_p > 0 && cfg.top_p <= 1, "generate: top_p must be in (0, 1], got {}", cfg.top_p);
  RLHF_CHECK(cfg.top_k >= 0, "generate: top_k must be >= 0, got {}", cfg.top_k);
  RLHF_CHECK(cfg.eos_check_every > 0, "generate: eos_check_every must be > 0");
  RLHF_CHECK(cfg.attend_bucket > 0, "generate: attend_bucket must be > 0, got {}", cfg.attend_bucket);
  const EngineOptions& e = cfg.engine_opt;
  RLHF_CHECK(e.max_batch_rows > 0 && e.max_batch_tokens > 0 && e.block_size > 0,
             "generate: the engine's max_batch_rows ({}), max_batch_tokens ({}) and block_size "
             "({}) must be > 0", e.max_batch_rows, e.max_batch_tokens, e.block_size);
}

torch::Tensor sample_tokens(const torch::Tensor& logits, const SamplingConfig& cfg,
                            at::Generator& gen) {
  if (cfg.temperature == 0.0) return logits.argmax(-1);  // [B]
  auto noise = torch::empty(logits.sizes(), logits.options().dtype(torch::kFloat));
  noise.exponential_(1.0, gen);                           // [B, V]
  return draw_tokens(logits, cfg, noise);
}

at::Generator sampling_generator(const torch::Device& dev, uint64_t seed) {
  if (dev.is_cpu()) return at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Generator g = at::globalContext().defaultGenerator(dev).clone();
  g.set_current_seed(seed);
  return g;
}

namespace {

// Where the sampling noise of a step comes from: one generator for the whole [B, V] draw, or
// one per row (row b's draws then depend only on its seed, not on the batch it is in).
class NoiseSource {
 public:
  NoiseSource(const torch::Device& dev, const std::vector<uint64_t>& seeds, bool per_row)
      : per_row_(per_row) {
    for (uint64_t s : seeds) gens_.push_back(sampling_generator(dev, s));
  }
  void fill(torch::Tensor& noise) {  // [B, V]
    if (!per_row_) {
      noise.exponential_(1.0, gens_[0]);
      return;
    }
    for (size_t b = 0; b < gens_.size(); ++b)
      noise.select(0, static_cast<int64_t>(b)).exponential_(1.0, gens_[b]);
  }
  torch::Tensor sample(const torch::Tensor& logits, const SamplingConfig& cfg) {
    if (cfg.temperature == 0.0) return logits.argmax(-1);  // [B]
    auto noise = torch::empty(logits.sizes(), logits.options().dtype(torch::kFloat));
    fill(noise);                                            // [B, V]
    return draw_tokens(logits, cfg, noise);
  }

 private:
  bool per_row_;
  std::vector<at::Generator> gens_;
};

// What a generate() call writes, all on the model's device.
struct DecodeBuffers {
  torch::Tensor tokens;     // [B, P + N] int64, prompts then sampled tokens
  torch::Tensor attention_mask;   // [B, P + N] bool: prompt mask, then true
  torch::Tensor response_mask;  // [B, max(N, 1)] bool
  torch::Tensor logprobs;   // [B, max(N, 1)] float
  torch::Tensor finished;   // [B] bool, updated in place
  torch::Tensor limit;      // [B] int64: row_max_new_tokens (undefined: none)
  int64_t P = 0;
};

// Records response token t (t_idx: [1] int64 on the device, so a captured step can advance it)
// of every row: the drawn tokens tok [B] and their log-probs under logits [B, V] divided by the
// sampling temperature (1 when greedy; no top-k/top-p filter); rows already finished get pad_id,
// mask false and log-prob 0. Returns the recorded tokens [B].
torch::Tensor record(DecodeBuffers& r, const torch::Tensor& logits, const torch::Tensor& tok_drawn,
                     const torch::Tensor& t_idx, const SamplingConfig& cfg, bool use_eos) {
  auto tok = tok_drawn.masked_fill(r.finished, cfg.pad_id);                         // [B]
  auto lp = sampled_logprobs(logits, tok, cfg).unsqueeze(1);                        // [B, 1]
  r.tokens.index_copy_(1, t_idx + r.P, tok.unsqueeze(1));
  r.logprobs.index_copy_(1, t_idx, lp.masked_fill(r.finished.unsqueeze(1), 0.0));
  r.response_mask.index_copy_(1, t_idx, r.finished.logical_not().unsqueeze(1));
  if (use_eos) r.finished.logical_or_(stop_mask(tok, cfg));
  if (r.limit.defined()) r.finished.logical_or_(r.limit.le(t_idx + 1));
  return tok;
}

// The static decode (DecodeMode::Static). State lives in device tensors that every step reads
// and advances itself: tok_ (the token fed), pos_ (its position), slot_ (its cache slot,
// = P + its response index). step() feeds response token t and records token t + 1.
class StaticDecoder {
 public:
  StaticDecoder(CausalLM& model, KVCache& cache, DecodeBuffers& r, const SamplingConfig& cfg,
                const torch::Tensor& first_tok, const torch::Tensor& first_pos, bool capture)
      : model_(model), cache_(cache), r_(r), cfg_(cfg), capture_(capture),
        use_eos_(cfg.stop_at_eos && cfg.eos_id >= 0) {
    const auto dev = r.tokens.device();
    auto lopt = torch::dtype(torch::kLong).device(dev);
    const int64_t B = r.tokens.size(0);
    tok_ = first_tok.reshape({B, 1}).clone();                 // [B, 1]
    pos_ = first_pos.reshape({B, 1}).clone();                 // [B, 1]
    slot_ = torch::full({1}, r.P, lopt);                      // [1]
    slots_ = torch::arange(cache.capacity, lopt).unsqueeze(0);  // [1, capacity]
    if (cfg.temperature != 0.0)
      noise_ = torch::empty({B, model->cfg.vocab_size}, torch::dtype(torch::kFloat).device(dev));
  }
  // Cache slots attended while feeding response token t (slot P + t): the filled prefix rounded
  // up to a multiple of attend_bucket.
  int64_t attend_len(int64_t t) const {
    const int64_t need = r_.P + t + 1, b = cfg_.attend_bucket;
    return std::min(cache_.capacity, (need + b - 1) / b * b);
  }
  void step(int64_t t, NoiseSource& noise) {
    if (noise_.defined()) noise.fill(noise_);  // same draws, same order as Eager
    const int64_t L = attend_len(t);
#ifdef RLHF_WITH_CUDA
    if (capture_) {
      auto it = graphs_.find(L);
      if (it == graphs_.end()) {
        try {
          it = graphs_.emplace(L, capture(L)).first;
        } catch (const std::exception& e) {
          // An op that cannot be captured on this libtorch: same results, without graphs.
          fmt::print(stderr, "warning: generate: CUDA-graph capture of the decode step failed, "
                     "decoding without graphs (RLHF_CUDA_GRAPH=0 skips the attempt): {}\n", e.what());
          capture_ = false;
          graphs_.clear();
          torch::cuda::synchronize();
        }
      }
      if (capture_) {
        it->second->replay();
        return;
      }
    }
#endif
    body(L);
  }
  int64_t graphs_captured() const {
#ifdef RLHF_WITH_CUDA
    return static_cast<int64_t>(graphs_.size());
#else
    return 0;
#endif
  }

 private:
  void body(int64_t L) {
    auto valid = r_.attention_mask.narrow(1, 0, L).logical_and(slots_.narrow(1, 0, L).le(slot_));  // [B, L]
    auto h = model_->trunk->decode_static(tok_, pos_, valid, cache_, slot_);  // [B, 1, C]
    auto logits = model_->logits_from_hidden(h).squeeze(1);                   // [B, V]
    auto tok = record(r_, logits, draw_tokens(logits, cfg_, noise_), slot_ + (1 - r_.P), cfg_, use_eos_);  // [B]
    tok_.copy_(tok.unsqueeze(1));
    pos_.add_(1);
    slot_.add_(1);
  }
#ifdef RLHF_WITH_CUDA
  // Capture body(L) on a side stream after warm-up runs (library handles, allocator). A warm-up
  // run performs a real step, so the counters and `finished` are put back afterwards; what it
  // wrote (cache slot, token, log-prob, mask of the same step) the replay writes again.
  std::unique_ptr<at::cuda::CUDAGraph> capture(int64_t L) {
    auto g = std::make_unique<at::cuda::CUDAGraph>();
    torch::cuda::synchronize();
    auto stream = c10::cuda::getStreamFromPool();
    {
      c10::cuda::CUDAStreamGuard guard(stream);
      auto tok = tok_.clone(), pos = pos_.clone(), slot = slot_.clone(), fin = r_.finished.clone();
      for (int i = 0; i < (captured_any_ ? 1 : 2); ++i) {  // the first capture warms up twice
        body(L);
        tok_.copy_(tok);
        pos_.copy_(pos);
        slot_.copy_(slot);
        r_.finished.copy_(fin);
      }
      g->capture_begin();
      try {
        body(L);
      } catch (...) {
        try {
          g->capture_end();  // ends the stream capture; reports the invalidated capture
        } catch (...) {
        }
        throw;
      }
      g->capture_end();
    }
    captured_any_ = true;
    torch::cuda::synchronize();
    return g;
  }
  std::map<int64_t, std::unique_ptr<at::cuda::CUDAGraph>> graphs_;
  bool captured_any_ = false;
#endif
  CausalLM& model_;
  KVCache& cache_;
  DecodeBuffers& r_;
  const SamplingConfig& cfg_;
  bool capture_, use_eos_;
  torch::Tensor tok_, pos_, slot_, slots_, noise_;
};
}  // namespace

bool cuda_graph_enabled(const SamplingConfig& cfg, const torch::Device& dev) {
#ifdef RLHF_WITH_CUDA
  if (!dev.is_cuda() || cfg.decode == DecodeMode::Eager) return false;
  const char* env = std::getenv("RLHF_CUDA_GRAPH");
  return !(env && std::string(env) == "0");
#else
  (void)cfg;
  (void)dev;
  return false;
#endif
}

DecodeMode resolved_decode_mode(const SamplingConfig& cfg, const torch::Device& dev) {
  if (cfg.decode != DecodeMode::Auto) return cfg.decode;
  return cuda_graph_enabled(cfg, dev) ? DecodeMode::Static : DecodeMode::Eager;
}

torch::Tensor stop_mask(const torch::Tensor& tokens, const SamplingConfig& cfg) {
  auto stop = torch::zeros_like(tokens, torch::kBool);
  if (cfg.eos_id < 0) return stop;
  stop.logical_or_(tokens == cfg.eos_id);
  for (int64_t s : cfg.extra_stop_ids) stop.logical_or_(tokens == s);
  return stop;
}

SamplingConfig sampling_config(int64_t max_new_tokens, double temperature, int64_t top_k,
                               double top_p, const SpecialIds& ids) {
  SamplingConfig sc;
  sc.max_new_tokens = max_new_tokens;
  sc.temperature = temperature;
  sc.top_k = top_k;
  sc.top_p = top_p;
  sc.eos_id = ids.eos;
  sc.extra_stop_ids = ids.stops;
  sc.pad_id = ids.pad;
  return sc;
}

namespace {
GenerateOutput generate_with(CausalLM& model, const torch::Tensor& prompts_in,
                             const torch::Tensor& prompt_mask_in, const SamplingConfig& cfg,
                             const std::vector<uint64_t>& seeds, bool per_row) {
  torch::NoGradGuard ng;
  EvalMode eval_mode(*model);
  const ModelConfig& mc = model->cfg;
  RLHF_CHECK(prompts_in.dim() == 2 && prompt_mask_in.sizes() == prompts_in.sizes(),
             "generate: prompts and prompt_mask must both be [B, P]");
  check_sampling(cfg);
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
  KVCache cache = KVCache::allocate(
      mc, B, cap, torch::dtype(KVCache::storage_dtype(dev, params.at(0).scalar_type())).device(dev));
  auto long_opt = torch::dtype(torch::kLong).device(dev);
  auto bool_opt = torch::dtype(torch::kBool).device(dev);
  DecodeBuffers r;
  r.P = P;
  r.tokens = torch::full({B, cap}, cfg.pad_id, long_opt);                 // [B, P+N]
  r.tokens.narrow(1, 0, P).copy_(prompts);
  r.attention_mask = torch::ones({B, cap}, bool_opt);                           // [B, P+N]
  r.attention_mask.narrow(1, 0, P).copy_(prompt_mask);
  r.response_mask = torch::zeros({B, std::max<int64_t>(N, 1)}, bool_opt);
  r.logprobs = torch::zeros({B, std::max<int64_t>(N, 1)}, torch::dtype(torch::kFloat).device(dev));
  r.finished = torch::zeros({B}, bool_opt);                               // [B]
  const bool use_eos = cfg.stop_at_eos && cfg.eos_id >= 0;
  check_row_limits(cfg, B);
  if (!cfg.row_max_new_tokens.empty())
    r.limit = torch::tensor(cfg.row_max_new_tokens, torch::kLong).to(dev);
  const bool can_end_early = use_eos || r.limit.defined();
  RLHF_CHECK(!per_row || static_cast<int64_t>(seeds.size()) == B,
             "generate: {} row seeds for {} prompt rows", seeds.size(), B);
  NoiseSource noise(dev, seeds, per_row);

  int64_t n = 0;
  if (N > 0) {
    auto pos = positions_from_mask(prompt_mask);                       // [B, P]
    auto h = model->trunk(prompts, pos, prompt_mask, &cache, 0);       // [B, P, C]
    auto logits = model->logits_from_hidden(h.narrow(1, P - 1, 1)).squeeze(1);  // [B, V]
    auto next_pos = pos.select(1, P - 1).unsqueeze(1) + 1;             // [B, 1]
    auto t_idx = [&](int64_t t) { return torch::full({1}, t, long_opt); };  // [1]
    auto tok = record(r, logits, noise.sample(logits, cfg), t_idx(0), cfg, use_eos);  // [B]
    std::unique_ptr<StaticDecoder> stat;
    if (N > 1 && resolved_decode_mode(cfg, dev) == DecodeMode::Static)
      stat = std::make_unique<StaticDecoder>(model, cache, r, cfg, tok, next_pos,
                                             cuda_graph_enabled(cfg, dev));
    for (int64_t t = 0;; ++t) {  // token t is recorded; feed it unless done
      n = t + 1;
      if (can_end_early && (t + 1) % cfg.eos_check_every == 0 && r.finished.all().item<bool>()) break;
      if (t + 1 == N) break;
      if (stat) {
        stat->step(t, noise);
        continue;
      }
      h = model->trunk(tok.unsqueeze(1), next_pos, r.attention_mask.narrow(1, 0, P + t + 1), &cache,
                       P + t);                                         // [B, 1, C]
      logits = model->logits_from_hidden(h).squeeze(1);                // [B, V]
      next_pos = next_pos + 1;
      tok = record(r, logits, noise.sample(logits, cfg), t_idx(t + 1), cfg, use_eos);
    }
    if (stat) out.cuda_graphs = stat->graphs_captured();
  }
  out.new_tokens = n;
  out.prefill_tokens = N > 0 ? B * P : 0;
  out.decode_steps = std::max<int64_t>(n - 1, 0);
  out.decode_rows = B * out.decode_steps;
  for (const auto& t : cache.k) out.peak_kv_bytes += 2 * static_cast<int64_t>(t.nbytes());
  out.tokens = r.tokens.narrow(1, 0, P + n).contiguous();
  out.response_mask = r.response_mask.narrow(1, 0, n).contiguous();
  out.logprobs = r.logprobs.narrow(1, 0, n).contiguous();
  out.attention_mask = torch::cat({prompt_mask, out.response_mask}, 1);
  return out;
}
}  // namespace

GenerateOutput generate(CausalLM& model, const torch::Tensor& prompts,
                        const torch::Tensor& prompt_mask, const SamplingConfig& cfg,
                        uint64_t seed) {
  return generate_with(model, prompts, prompt_mask, cfg, {seed}, false);
}

GenerateOutput generate(CausalLM& model, const torch::Tensor& prompts,
                        const torch::Tensor& prompt_mask, const SamplingConfig& cfg,
                        const std::vector<uint64_t>& row_seeds) {
  if (cfg.engine == Engine::Paged) return generate_paged(model, prompts, prompt_mask, cfg, row_seeds);
  return generate_with(model, prompts, prompt_mask, cfg, row_seeds, true);
}

}  // namespace rlhf
