// Data-parallel equivalence: training a tiny CausalLM on 2 ranks, each on a disjoint half of the
// global batch with all_reduce_gradients, must match training one model on the whole global batch
// in a single process (computed locally on every rank as the reference, no communication).
// Same seed, same data, AdamW, clipping by the global gradient norm; fp32 on CPU.
//
// Loss normalisation: the global loss is the mean over all target tokens of the global batch,
// sum(token losses) / N. Each rank's shard has a different token count n_r (the rows are ragged
// on purpose), so the average of per-rank means, (1/W) sum_r (S_r / n_r), is NOT the global mean.
// Instead every rank all-reduces its token count first (N = sum_r n_r) and backpropagates
// S_r * W / N; all_reduce_gradients averages over ranks (divides by W), giving exactly
// d(sum_r S_r / N) = the global gradient.
//
// Tolerance: not zero because the DP run sums the same terms in a different order (per-shard
// partial sums of losses and gradients, then the all-reduce; BLAS kernels also block a [2, T]
// batch differently from a [4, T] one), and fp32 addition is not associative. Those differences
// are ~1e-7 relative per step; 1e-5 leaves room for a few optimizer steps of growth.
#include <gtest/gtest.h>

#include <cmath>

#include "common/core/check.h"
#include "common/dist/dist.h"
#include "common/model/model.h"

namespace rlhf {
namespace {

constexpr int64_t kGlobalBatch = 4, kT = 12, kSteps = 5;
constexpr double kLr = 3e-3, kClip = 0.5;

struct Batch {
  torch::Tensor tokens;  // [G, T] int64, left-padded with 0
  torch::Tensor mask;    // [G, T] bool
};

// The global batch of `step`: identical on every rank. Ragged lengths, longer rows first, so the
// first half of the batch (rank 0's shard) holds many more target tokens than the second.
Batch global_batch(int64_t step, int64_t vocab) {
  auto gen = at::detail::createCPUGenerator(1000 + step);
  const int64_t lens[kGlobalBatch] = {kT, kT - 1 - step % 2, 4 + step % 3, 3};
  torch::Tensor tokens = torch::randint(1, vocab, {kGlobalBatch, kT}, gen, torch::kLong);  // [G,T]
  torch::Tensor mask = torch::zeros({kGlobalBatch, kT}, torch::kBool);                       // [G,T]
  for (int64_t b = 0; b < kGlobalBatch; ++b) mask[b].narrow(0, kT - lens[b], lens[b]).fill_(true);
  return {tokens.masked_fill(mask.logical_not(), 0), mask};
}

// Per-target-token cross-entropy of the valid targets (position t predicts t + 1, both real).
torch::Tensor token_losses(CausalLM& model, const Batch& b) {
  torch::Tensor logits = model->forward(b.tokens, positions_from_mask(b.mask), b.mask);  // [B,T,V]
  const int64_t V = logits.size(2);
  torch::Tensor lg = logits.narrow(1, 0, kT - 1).reshape({-1, V});       // [B*(T-1), V]
  torch::Tensor tgt = b.tokens.narrow(1, 1, kT - 1).reshape({-1});       // [B*(T-1)]
  torch::Tensor valid =
      (b.mask.narrow(1, 0, kT - 1) & b.mask.narrow(1, 1, kT - 1)).reshape({-1});  // [B*(T-1)]
  torch::Tensor ce = torch::nn::functional::cross_entropy(
      lg, tgt, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  return ce.masked_select(valid);  // [n valid]
}

Batch shard(const Batch& b, int rank, int world) {
  const int64_t per = kGlobalBatch / world;
  return {b.tokens.narrow(0, rank * per, per), b.mask.narrow(0, rank * per, per)};
}

std::unique_ptr<torch::optim::AdamW> make_opt(CausalLM& m) {
  return std::make_unique<torch::optim::AdamW>(
      m->parameters(), torch::optim::AdamWOptions(kLr).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1));
}

torch::Tensor flat_params(CausalLM& m) {
  std::vector<torch::Tensor> v;
  for (auto& p : m->parameters()) v.push_back(p.detach().reshape(-1));
  return torch::cat(v);  // [n_params]
}

void run_equivalence(const ModelConfig& cfg) {
  Communicator& comm = world();
  const int W = comm.world_size(), R = comm.rank();
  RLHF_CHECK(kGlobalBatch % W == 0, "world size {} must divide the global batch {}", W, kGlobalBatch);
  const uint64_t seed = 1234;

  torch::manual_seed(seed);
  CausalLM ref(cfg);
  // Each rank initialises differently on purpose; broadcast_parameters makes rank 0's values
  // everyone's, as the trainers do at start.
  torch::manual_seed(R == 0 ? seed : seed + 7919 * R);
  CausalLM dp(cfg);
  broadcast_parameters(comm, dp->parameters());
  ASSERT_TRUE(torch::equal(flat_params(ref), flat_params(dp))) << "same seed -> same init";
  const torch::Tensor init = flat_params(ref).clone();

  auto ref_opt = make_opt(ref);
  auto dp_opt = make_opt(dp);
  double max_rel_loss = 0;
  int clipped_steps = 0;
  for (int64_t step = 0; step < kSteps; ++step) {
    const Batch gb = global_batch(step, cfg.vocab_size);

    // (a) reference: one process, the whole global batch, mean over its N target tokens.
    ref_opt->zero_grad();
    torch::Tensor ref_tok = token_losses(ref, gb);  // [N]
    torch::Tensor ref_loss = ref_tok.mean();
    ref_loss.backward();
    double ref_norm = torch::nn::utils::clip_grad_norm_(ref->parameters(), kClip);
    clipped_steps += ref_norm > kClip;
    ref_opt->step();

    if (W > 1) {
      // The shards hold very different token counts, so the mean of per-rank means would weight
      // rank 1's tokens several times more than rank 0's (at initialisation every token's loss
      // is close to ln V, so the loss *values* alone would not reveal that; the final weights
      // would).
      std::vector<int64_t> n(W);
      for (int r = 0; r < W; ++r) {
        torch::Tensor v = shard(gb, r, W).mask;  // [G/W, T]
        n[r] = (v.narrow(1, 0, kT - 1) & v.narrow(1, 1, kT - 1)).sum().item<int64_t>();
      }
      EXPECT_GE(n[0], 2 * n[W - 1]) << "step " << step << ": shards should be ragged";
    }

    // (b) data-parallel: this rank's half; global token count first, then sum * W / N.
    dp_opt->zero_grad();
    torch::Tensor tok = token_losses(dp, shard(gb, R, W));  // [n_r]
    const double n_global = comm.all_reduce_scalar(static_cast<double>(tok.numel()));
    ASSERT_EQ(n_global, static_cast<double>(ref_tok.numel()));
    torch::Tensor local_sum = tok.sum();
    (local_sum * (W / n_global)).backward();
    // ~0.002 MB buckets: several flat buckets per step, parameters split across them.
    all_reduce_gradients(comm, dp->parameters(), 0.002);
    double dp_norm = torch::nn::utils::clip_grad_norm_(dp->parameters(), kClip);
    dp_opt->step();
    const double dp_loss = comm.all_reduce_scalar(local_sum.item<double>()) / n_global;

    const double rel = std::abs(dp_loss / ref_loss.item<double>() - 1);
    max_rel_loss = std::max(max_rel_loss, rel);
    EXPECT_LT(rel, 1e-5) << "step " << step << ": ref loss " << ref_loss.item<double>()
                         << " dp loss " << dp_loss;
    EXPECT_NEAR(dp_norm, ref_norm, 1e-5 * ref_norm) << "grad norm at step " << step;
  }
  EXPECT_GT(clipped_steps, 0) << "the clip threshold should be active in some steps";

  const torch::Tensor wr = flat_params(ref), wd = flat_params(dp);
  const double max_dw = (wr - wd).abs().max().item<double>();
  const double moved = (wr - init).abs().max().item<double>();
  EXPECT_LT(max_dw, 1e-5);
  EXPECT_GT(moved, 1e-3) << "training should change the weights";
  // Every rank holds bit-identical weights (same averaged gradients, same step; with 2 ranks the
  // all-reduce is a single commutative addition).
  torch::Tensor r0 = wd.clone();
  comm.broadcast(r0, 0);
  const double cross_rank = (r0 - wd).abs().max().item<double>();
  EXPECT_EQ(cross_rank, 0.0);
  std::printf("[rank %d] %s: max rel loss diff %.3g, max |dw| %.3g (weights moved up to %.3g), "
              "clipped %d/%ld steps, cross-rank max |dw| %.3g\n",
              R, family_name(cfg.family).c_str(), max_rel_loss, max_dw, moved, clipped_steps,
              static_cast<long>(kSteps), cross_rank);
}

TEST(DataParallel, EquivalentToSingleProcessGpt2) {
  ModelConfig cfg;
  cfg.family = Family::GPT2;
  cfg.vocab_size = 64;
  cfg.n_layer = 2;
  cfg.n_head = cfg.n_kv_head = 2;
  cfg.d_model = 32;
  cfg.d_ff = 64;
  cfg.max_seq_len = 16;
  run_equivalence(cfg);
}

TEST(DataParallel, EquivalentToSingleProcessLlama) {
  ModelConfig cfg;
  cfg.family = Family::Llama;
  cfg.vocab_size = 64;
  cfg.n_layer = 2;
  cfg.n_head = 4;
  cfg.n_kv_head = 2;
  cfg.d_model = 32;
  cfg.d_ff = 64;
  cfg.max_seq_len = 16;
  cfg.tie_embeddings = false;
  run_equivalence(cfg);
}

}  // namespace
}  // namespace rlhf
