// rollout_engine.cpp — generate_paged (rollout_engine.h): block allocator, prefill of admitted
// groups into shared blocks, paged decode steps, continuous admission.
#include "common/model/rollout_engine.h"

#include <algorithm>
#include <map>

#include "common/core/check.h"

namespace rlhf {

std::vector<int64_t> prompt_groups(const torch::Tensor& prompts, const torch::Tensor& prompt_mask) {
  auto toks = prompts.to(torch::kCPU, torch::kLong).contiguous();
  auto msk = prompt_mask.to(torch::kCPU, torch::kBool).contiguous();
  const int64_t B = toks.size(0), P = toks.size(1);
  const int64_t* tp = toks.data_ptr<int64_t>();
  const bool* mp = msk.data_ptr<bool>();
  std::map<std::vector<int64_t>, int64_t> seen;
  std::vector<int64_t> group(B);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int64_t> real;
    for (int64_t i = 0; i < P; ++i)
      if (mp[b * P + i]) real.push_back(tp[b * P + i]);
    auto it = seen.emplace(std::move(real), static_cast<int64_t>(seen.size())).first;
    group[b] = it->second;
  }
  return group;
}

namespace {

// Hands out pool blocks with reference counts; block 0 is the padding block, never handed out.
// A block is zeroed when taken: attention multiplies the masked slots of a gathered block by a
// zero weight, and garbage there (NaN from reused memory) would survive that.
class BlockAllocator {
 public:
  explicit BlockAllocator(PagedKV& kv) : kv_(kv) {
    ref_.assign(kv.num_blocks(), 0);
    for (int64_t b = kv.num_blocks() - 1; b >= 1; --b) free_.push_back(b);
    kv_.zero_block(0);
  }
  int64_t take() {
    RLHF_CHECK(!free_.empty(), "rollout engine: all {} KV blocks in use (the pool is sized for the "
               "worst case; this is a bug)", kv_.num_blocks());
    const int64_t b = free_.back();
    free_.pop_back();
    ref_[b] = 1;
    kv_.zero_block(b);
    peak_ = std::max(peak_, in_use());
    return b;
  }
  void share(int64_t b) { ++ref_[b]; }
  void release(int64_t b) {
    RLHF_CHECK(ref_[b] > 0, "rollout engine: block {} released more often than taken", b);
    if (--ref_[b] == 0) free_.push_back(b);
  }
  int64_t in_use() const { return static_cast<int64_t>(ref_.size() - 1 - free_.size()); }
  int64_t peak() const { return peak_; }

 private:
  PagedKV& kv_;
  std::vector<int32_t> ref_;
  std::vector<int64_t> free_;  // taken from the back: lowest ids first
  int64_t peak_ = 0;
};

struct Row {
  int64_t p = 0;                // real prompt tokens
  std::vector<int64_t> blocks;  // the row's block table
  int64_t t = 0;                // response tokens recorded
  int64_t last = 0;             // the last recorded token (fed by the next step)
  int64_t limit = 0;            // response tokens at most (max_new_tokens or the row's own)
};

class PagedEngine {
 public:
  PagedEngine(CausalLM& model, const torch::Tensor& prompts, const torch::Tensor& prompt_mask,
         const SamplingConfig& cfg, const std::vector<uint64_t>& seeds)
      : model_(model), cfg_(cfg), opt_(cfg.engine_opt),
        dev_(model->parameters().at(0).device()),
        use_eos_(cfg.stop_at_eos && cfg.eos_id >= 0) {
    const ModelConfig& mc = model->cfg;
    prompts_cpu_ = prompts.to(torch::kCPU, torch::kLong).contiguous();
    mask_cpu_ = prompt_mask.to(torch::kCPU, torch::kBool).contiguous();
    B_ = prompts_cpu_.size(0);
    N_ = cfg.max_new_tokens;
    const std::vector<int64_t> group = prompt_groups(prompts_cpu_, mask_cpu_);
    for (int64_t b = 0; b < B_; ++b) {
      if (group[b] >= static_cast<int64_t>(groups_.size())) groups_.emplace_back();
      groups_[group[b]].push_back(b);
    }
    rows_.resize(B_);
    for (int64_t b = 0; b < B_; ++b) {
      rows_[b].p = mask_cpu_[b].sum().item<int64_t>();
      rows_[b].limit = cfg.row_max_new_tokens.empty() ? N_ : cfg.row_max_new_tokens[b];
      gens_.push_back(sampling_generator(dev_, seeds[b]));
    }
    kv_opt_ = torch::dtype(KVCache::storage_dtype(dev_, model->parameters().at(0).scalar_type()))
                  .device(dev_);
    // The pool holds the worst case (every group's prompt blocks, and for every sample a copy
    // of the last one plus blocks for max_new_tokens), left uninitialised: on the CPU only the
    // blocks taken are ever touched, so resident memory follows the blocks in use.
    const int64_t bs = opt_.block_size;
    int64_t worst = 1;
    for (const auto& g : groups_) {
      const int64_t p = rows_[g[0]].p;
      worst += (p + bs - 1) / bs + static_cast<int64_t>(g.size()) * (1 + (p % bs + N_ + bs - 1) / bs);
    }
    kv_ = PagedKV::allocate(mc, worst, bs, kv_opt_);
    block_bytes_ = kv_.bytes() / worst;
    alloc_ = std::make_unique<BlockAllocator>(kv_);
    auto lo = torch::dtype(torch::kLong).device(dev_);
    out_tokens_ = torch::full({B_, std::max<int64_t>(N_, 1)}, cfg.pad_id, lo);
    out_logp_ = torch::zeros({B_, std::max<int64_t>(N_, 1)}, torch::dtype(torch::kFloat).device(dev_));
    out_mask_ = torch::zeros({B_, std::max<int64_t>(N_, 1)}, torch::dtype(torch::kBool).device(dev_));
    V_ = mc.vocab_size;
  }

  GenerateOutput run() {
    size_t next = 0;
    while (next < groups_.size() || !active_.empty()) {
      std::vector<size_t> admit;
      int64_t rows_now = static_cast<int64_t>(active_.size()), pmax = 0;
      while (next < groups_.size()) {
        const auto& g = groups_[next];
        const int64_t n = static_cast<int64_t>(g.size());
        const int64_t pm = std::max(pmax, rows_[g[0]].p);
        const bool first = admit.empty() && active_.empty();
        if (!first && (rows_now + n > opt_.max_batch_rows ||
                       pm * static_cast<int64_t>(admit.size() + 1) > opt_.max_batch_tokens))
          break;
        admit.push_back(next++);
        rows_now += n;
        pmax = pm;
      }
      if (!admit.empty()) prefill(admit);
      if (!active_.empty()) decode_step();
    }
    return output();
  }

 private:
  // Prefill the admitted groups' prompts in one left-padded pass, move their keys/values into
  // blocks, give each sample its block table and draw its first token.
  void prefill(const std::vector<size_t>& admit) {
    const ModelConfig& mc = model_->cfg;
    const int64_t G = static_cast<int64_t>(admit.size()), bs = opt_.block_size;
    std::vector<std::vector<int32_t>> prompts;
    for (size_t gi : admit) {
      const int64_t b = groups_[gi][0], P = prompts_cpu_.size(1), p = rows_[b].p;
      const int64_t* tp = prompts_cpu_.data_ptr<int64_t>() + b * P;
      const bool* mp = mask_cpu_.data_ptr<bool>() + b * P;
      std::vector<int32_t> r;
      for (int64_t i = 0; i < P; ++i)
        if (mp[i]) r.push_back(static_cast<int32_t>(tp[i]));
      RLHF_CHECK(static_cast<int64_t>(r.size()) == p, "rollout engine: prompt row {} changed", b);
      prompts.push_back(std::move(r));
    }
    auto [toks, msk] = left_pad(prompts, cfg_.pad_id);
    toks = toks.to(dev_);
    msk = msk.to(dev_);
    const int64_t Pm = toks.size(1);
    KVCache tmp = KVCache::allocate(mc, G, Pm, kv_opt_);
    int64_t tmp_bytes = 0;
    for (const auto& t : tmp.k) tmp_bytes += 2 * static_cast<int64_t>(t.nbytes());
    auto h = model_->trunk(toks, positions_from_mask(msk), msk, &tmp, 0);       // [G, Pm, C]
    auto logits = model_->logits_from_hidden(h.narrow(1, Pm - 1, 1)).squeeze(1);  // [G, V]
    prefill_tokens_ += G * Pm;
    // Blocks of each group's prompt; source rows of the temporary cache -> pool slots.
    std::vector<std::vector<int64_t>> gblocks(G);
    std::vector<int64_t> src, dst;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t p = static_cast<int64_t>(prompts[g].size());
      for (int64_t i = 0; i < (p + bs - 1) / bs; ++i) gblocks[g].push_back(alloc_->take());
      for (int64_t i = 0; i < p; ++i) {
        src.push_back(g * Pm + (Pm - p) + i);
        dst.push_back(gblocks[g][i / bs] * bs + i % bs);
      }
    }
    peak_kv_ = std::max(peak_kv_, alloc_->in_use() * block_bytes_ + tmp_bytes);
    auto src_t = torch::tensor(src, torch::kLong).to(dev_), dst_t = torch::tensor(dst, torch::kLong).to(dev_);
    const int64_t Hkv = mc.n_kv_head, D = mc.head_dim(), NB = kv_.num_blocks();
    for (int64_t l = 0; l < mc.n_layer; ++l) {
      auto ks = tmp.k[l].permute({0, 2, 1, 3}).reshape({G * Pm, Hkv, D}).index_select(0, src_t);
      auto vs = tmp.v[l].permute({0, 2, 1, 3}).reshape({G * Pm, Hkv, D}).index_select(0, src_t);
      kv_.k[l].view({NB * bs, Hkv, D}).index_copy_(0, dst_t, ks);
      kv_.v[l].view({NB * bs, Hkv, D}).index_copy_(0, dst_t, vs);
    }
    // Each sample's block table: the full blocks shared, the partly filled last block copied for
    // every sample but the last (which takes the original).
    std::vector<int64_t> new_rows, logit_row;
    for (int64_t g = 0; g < G; ++g) {
      const auto& members = groups_[admit[g]];
      const int64_t p = static_cast<int64_t>(prompts[g].size());
      const bool partial = p % bs != 0;
      const size_t nfull = gblocks[g].size() - (partial ? 1 : 0);
      for (size_t j = 0; j < members.size(); ++j) {
        Row& r = rows_[members[j]];
        for (size_t i = 0; i < nfull; ++i) {
          alloc_->share(gblocks[g][i]);
          r.blocks.push_back(gblocks[g][i]);
        }
        if (partial) {
          const int64_t orig = gblocks[g].back();
          if (j + 1 == members.size()) {
            r.blocks.push_back(orig);
          } else {
            const int64_t b = alloc_->take();
            kv_.copy_block(orig, b);
            r.blocks.push_back(b);
          }
        }
        new_rows.push_back(members[j]);
        logit_row.push_back(g);
      }
      for (size_t i = 0; i < nfull; ++i) alloc_->release(gblocks[g][i]);  // the group's own hold
    }
    track_blocks();
    auto rl = logits.index_select(0, torch::tensor(logit_row, torch::kLong).to(dev_));  // [R, V]
    record(new_rows, rl, /*joining=*/true);
  }

  // One decode step over the active rows: feed each row's last token at its next position.
  void decode_step() {
    const int64_t R = static_cast<int64_t>(active_.size()), bs = opt_.block_size;
    std::vector<int64_t> tok(R), pos(R), slot(R), len(R);
    int64_t MB = 0;
    for (int64_t i = 0; i < R; ++i) {
      Row& r = rows_[active_[i]];
      const int64_t at = r.p + r.t - 1;  // logical position of the fed token
      if (at / bs >= static_cast<int64_t>(r.blocks.size())) r.blocks.push_back(alloc_->take());
      tok[i] = r.last;
      pos[i] = at;
      slot[i] = r.blocks[at / bs] * bs + at % bs;
      len[i] = at + 1;
      MB = std::max<int64_t>(MB, static_cast<int64_t>(r.blocks.size()));
    }
    track_blocks();
    std::vector<int64_t> table(R * MB, 0);
    for (int64_t i = 0; i < R; ++i) {
      const auto& bl = rows_[active_[i]].blocks;
      std::copy(bl.begin(), bl.end(), table.begin() + i * MB);
    }
    auto lo = torch::dtype(torch::kLong);
    PagedStep step;
    step.write_slot = torch::tensor(slot, lo).to(dev_);                                // [R]
    step.block_table = torch::tensor(table, lo).view({R, MB}).to(dev_);                // [R, MB]
    auto lens = torch::tensor(len, lo).to(dev_);                                       // [R]
    step.attention_mask = torch::arange(MB * bs, lo.device(dev_)).unsqueeze(0) < lens.unsqueeze(1);
    auto tokens = torch::tensor(tok, lo).view({R, 1}).to(dev_);
    auto positions = torch::tensor(pos, lo).view({R, 1}).to(dev_);
    auto h = model_->trunk->decode_paged(tokens, positions, kv_, step);  // [R, 1, C]
    auto logits = model_->logits_from_hidden(h).squeeze(1);             // [R, V]
    ++decode_steps_;
    decode_rows_ += R;
    const std::vector<int64_t> rows = active_;
    record(rows, logits, /*joining=*/false);
  }

  // Draws and records response token t of each row in `rows` from its logits [R, V]; rows that
  // end free their blocks; joining rows that go on are added to the active set.
  void record(const std::vector<int64_t>& rows, const torch::Tensor& logits, bool joining) {
    const int64_t R = static_cast<int64_t>(rows.size());
    torch::Tensor noise;
    if (cfg_.temperature != 0.0) {
      noise = torch::empty({R, V_}, torch::dtype(torch::kFloat).device(dev_));
      for (int64_t i = 0; i < R; ++i) noise.select(0, i).exponential_(1.0, gens_[rows[i]]);
    }
    auto tok = draw_tokens(logits, cfg_, noise);         // [R]
    auto lp = sampled_logprobs(logits, tok, cfg_);       // [R]
    std::vector<int64_t> flat(R);
    for (int64_t i = 0; i < R; ++i) flat[i] = rows[i] * out_tokens_.size(1) + rows_[rows[i]].t;
    auto flat_t = torch::tensor(flat, torch::kLong).to(dev_);
    out_tokens_.view({-1}).index_copy_(0, flat_t, tok);
    out_logp_.view({-1}).index_copy_(0, flat_t, lp.to(torch::kFloat));
    out_mask_.view({-1}).index_fill_(0, flat_t, true);
    auto tok_cpu = tok.to(torch::kCPU).contiguous();
    const int64_t* tp = tok_cpu.data_ptr<int64_t>();
    std::vector<int64_t> still;
    for (int64_t i = 0; i < R; ++i) {
      Row& r = rows_[rows[i]];
      r.last = tp[i];
      ++r.t;
      longest_ = std::max(longest_, r.t);
      if (r.t == r.limit || (use_eos_ && is_stop(tp[i]))) {
        for (int64_t b : r.blocks) alloc_->release(b);
        r.blocks.clear();
      } else {
        still.push_back(rows[i]);
      }
    }
    if (joining) {
      active_.insert(active_.end(), still.begin(), still.end());
    } else {
      active_ = std::move(still);
    }
  }

  bool is_stop(int64_t tok) const {
    if (tok == cfg_.eos_id) return true;
    return std::find(cfg_.extra_stop_ids.begin(), cfg_.extra_stop_ids.end(), tok) !=
           cfg_.extra_stop_ids.end();
  }
  void track_blocks() { peak_kv_ = std::max(peak_kv_, alloc_->in_use() * block_bytes_); }

  GenerateOutput output() {
    GenerateOutput out;
    auto prompts = prompts_cpu_.to(dev_), pmask = mask_cpu_.to(dev_);
    const int64_t n = longest_;
    out.prompt_len = prompts.size(1);
    out.new_tokens = n;
    out.tokens = torch::cat({prompts, out_tokens_.narrow(1, 0, n)}, 1);
    out.response_mask = out_mask_.narrow(1, 0, n).contiguous();
    out.logprobs = out_logp_.narrow(1, 0, n).contiguous();
    out.attention_mask = torch::cat({pmask, out.response_mask}, 1);
    out.prefill_tokens = prefill_tokens_;
    out.decode_rows = decode_rows_;
    out.decode_steps = decode_steps_;
    out.peak_kv_bytes = peak_kv_;
    return out;
  }

  CausalLM& model_;
  const SamplingConfig& cfg_;
  const EngineOptions& opt_;
  torch::Device dev_;
  bool use_eos_;
  torch::Tensor prompts_cpu_, mask_cpu_;
  int64_t B_ = 0, N_ = 0, V_ = 0;
  std::vector<std::vector<int64_t>> groups_;  // rows of each distinct prompt, in order
  std::vector<Row> rows_;
  std::vector<at::Generator> gens_;
  torch::TensorOptions kv_opt_;
  PagedKV kv_;
  std::unique_ptr<BlockAllocator> alloc_;
  std::vector<int64_t> active_;  // rows being decoded
  torch::Tensor out_tokens_, out_logp_, out_mask_;  // [B, max(N, 1)]
  int64_t longest_ = 0, prefill_tokens_ = 0, decode_rows_ = 0, decode_steps_ = 0, peak_kv_ = 0,
          block_bytes_ = 0;
};

}  // namespace

GenerateOutput generate_paged(CausalLM& model, const torch::Tensor& prompts,
                              const torch::Tensor& prompt_mask, const SamplingConfig& cfg,
                              const std::vector<uint64_t>& row_seeds) {
  torch::NoGradGuard ng;
  EvalMode eval_mode(*model);
  check_sampling(cfg);
  RLHF_CHECK(prompts.dim() == 2 && prompt_mask.sizes() == prompts.sizes(),
             "generate: prompts and prompt_mask must both be [B, P]");
  const int64_t B = prompts.size(0), P = prompts.size(1), N = cfg.max_new_tokens;
  RLHF_CHECK(B > 0 && P > 0, "generate: empty prompt batch [{}, {}]", B, P);
  RLHF_CHECK(P + N <= model->cfg.max_seq_len,
             "generate: prompt length {} + max_new_tokens {} exceeds the model's max_seq_len {}", P,
             N, model->cfg.max_seq_len);
  RLHF_CHECK(prompt_mask.any(1).all().item<bool>(),
             "generate: every prompt row needs at least one real token (mask row all false)");
  RLHF_CHECK(static_cast<int64_t>(row_seeds.size()) == B, "generate: {} row seeds for {} prompt rows",
             row_seeds.size(), B);
  check_row_limits(cfg, B);
  if (N == 0) {
    GenerateOutput out;
    const auto dev = model->parameters().at(0).device();
    out.prompt_len = P;
    out.tokens = prompts.to(dev, torch::kLong);
    out.attention_mask = prompt_mask.to(dev, torch::kBool);
    out.response_mask = torch::zeros({B, 0}, torch::dtype(torch::kBool).device(dev));
    out.logprobs = torch::zeros({B, 0}, torch::dtype(torch::kFloat).device(dev));
    return out;
  }
  PagedEngine engine(model, prompts, prompt_mask, cfg, row_seeds);
  return engine.run();
}

}  // namespace rlhf
