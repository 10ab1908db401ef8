// ZeRO (src/common/train/zero.h) and Communicator::reduce_scatter, under mpirun -np 2 (and 1).
//
// reduce_scatter: rank r fills in[k] = (r + 1) · (k + 1), k < W·n, so rank q's result is
// out[j] = Σ_r (r + 1) · (q·n + j + 1) = (q·n + j + 1) · W(W + 1)/2 (Sum), that / W (Avg),
// and W · (q·n + j + 1) (Max: the last rank's value).
//
// Sharded AdamW against a single-process reference: every rank also trains a copy of the model on
// the whole global batch alone (no communication; stage-0 AdamW::step after a hand-written global
// norm clip), while the sharded copy trains on its half in 2 micro-batches with optimizer_step at
// stages 1, 2 and 3 (stage 3 with activation checkpointing, whose block hooks gather and free the
// blocks), and a stage-0 copy trains on the same shards with optimizer_step (all-reduce). After
// kSteps steps the sharded weights agree with the stage-0 copy's to 1e-6 relative (only the
// reduction order differs) and with the single process's to 1e-5 (also [2, T] vs [8, T] BLAS
// blocking, as in test_dp_equivalence). A 2-D parameter
// outside the forward (no gradient on any rank) must stay bit-identical: no decay, as stage 0.
#include <gtest/gtest.h>

#include <cmath>

#include "common/dist/dist.h"
#include "common/model/model.h"
#include "common/train/optimizer.h"
#include "common/train/zero.h"

namespace rlhf {
namespace {

TEST(ReduceScatter, SumAvgMaxAgainstClosedForm) {
  Communicator& comm = world();
  const int64_t W = comm.world_size(), q = comm.rank(), n = 5;
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    torch::Tensor in = (torch::arange(1, W * n + 1, dtype) * (q + 1)).contiguous();  // [W·n]
    torch::Tensor idx = torch::arange(q * n + 1, q * n + n + 1, dtype);                // [n]
    EXPECT_TRUE(torch::equal(comm.reduce_scatter(in, ReduceOp::Sum), idx * (W * (W + 1) / 2)));
    EXPECT_TRUE(torch::allclose(comm.reduce_scatter(in, ReduceOp::Avg), idx * (W + 1) / 2.0));
    EXPECT_TRUE(torch::equal(comm.reduce_scatter(in, ReduceOp::Max), idx * W));
  }
  torch::Tensor ints = torch::full({W * 3}, q + 1, torch::kLong);
  EXPECT_TRUE(torch::equal(comm.reduce_scatter(ints), torch::full({3}, W * (W + 1) / 2, torch::kLong)));
  if (W > 1) {
    torch::Tensor odd = torch::ones({W * 2 + 1});
    EXPECT_THROW(comm.reduce_scatter(odd), Error);  // not a multiple of the world size
  }
}

TEST(ZeroStage, FromConfigValue) {
  EXPECT_EQ(zero_stage_from(0), ZeroStage::Off);
  EXPECT_EQ(zero_stage_from(3), ZeroStage::Parameters);
  try {
    zero_stage_from(4);
    FAIL() << "stage 4 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dist.zero_stage"), std::string::npos) << e.what();
  }
}

constexpr int64_t kBatch = 8, kT = 10, kSteps = 4;
constexpr double kLr = 5e-3, kClip = 0.3, kWd = 0.1;

ModelConfig zero_config(bool checkpointed = true) {
  ModelConfig c;
  c.family = Family::Llama;
  c.vocab_size = 37;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = 2;
  c.d_model = 16;
  c.d_ff = 48;  // odd sizes: groups that do not divide evenly over ranks (padding)
  c.max_seq_len = 16;
  c.tie_embeddings = false;
  c.activation_checkpointing = checkpointed;
  return c;
}

torch::Tensor batch_tokens(int64_t step) {
  auto gen = at::detail::createCPUGenerator(77 + step);
  return torch::randint(0, 37, {kBatch, kT}, gen, torch::kLong);  // [G, T]
}

// Σ of next-token cross-entropies of rows [b0, b0 + n).
torch::Tensor nll_sum(CausalLM& m, const torch::Tensor& tokens) {
  torch::Tensor logits = m->forward(tokens, torch::Tensor(), torch::Tensor());  // [b, T, V]
  const int64_t V = logits.size(2);
  return torch::nn::functional::cross_entropy(
      logits.narrow(1, 0, kT - 1).reshape({-1, V}), tokens.narrow(1, 1, kT - 1).reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
}

std::vector<NamedParam> with_unused(CausalLM& m, torch::Tensor unused) {
  auto ps = named_params(*m);
  ps.push_back({"unused", unused});
  return ps;
}

void run_sharded(ZeroStage stage, bool checkpointed = true) {
  Communicator& comm = world();
  const int W = comm.world_size(), R = comm.rank();
  torch::manual_seed(99);
  CausalLM ref(zero_config());
  torch::manual_seed(99);
  CausalLM z(zero_config(checkpointed));
  torch::manual_seed(99);
  CausalLM dp(zero_config());
  torch::Tensor ref_unused = torch::full({3, 3}, 0.5).requires_grad_(true);
  torch::Tensor z_unused = ref_unused.detach().clone().requires_grad_(true);
  torch::Tensor dp_unused = ref_unused.detach().clone().requires_grad_(true);
  AdamW ref_opt(with_unused(ref, ref_unused), 0.9, 0.95, 1e-8, kWd);
  AdamW opt(with_unused(z, z_unused), 0.9, 0.95, 1e-8, kWd);
  AdamW dp_opt(with_unused(dp, dp_unused), 0.9, 0.95, 1e-8, kWd);  // stage 0 on the same ranks
  opt.shard(stage, comm, *z);
  ASSERT_EQ(opt.zero_stage(), stage);
  ref->train();
  z->train();
  dp->train();
  const double N = static_cast<double>(kBatch * (kT - 1));  // target tokens of the global batch
  int clipped = 0;
  for (int64_t step = 0; step < kSteps; ++step) {
    const torch::Tensor gb = batch_tokens(step);  // [G, T]
    // (a) one process, the whole batch, mean over all tokens, clip by the global norm, step
    (nll_sum(ref, gb) / N).backward();
    double sq = 0;
    for (auto& p : ref_opt.params())
      if (p.param.grad().defined()) sq += p.param.grad().pow(2).sum().item<double>();
    const double norm = std::sqrt(sq);
    if (norm > kClip) {
      ++clipped;
      for (auto& p : ref_opt.params())
        if (p.param.grad().defined()) p.param.mutable_grad().mul_(kClip / (norm + 1e-6));
    }
    ref_opt.step(kLr);
    ref_opt.zero_grad();
    // (b) sharded: this rank's rows in 2 micro-batches, sum · W / N each
    const int64_t per = kBatch / W, mb = per / 2;
    for (int64_t a = 0; a < 2; ++a) {
      (nll_sum(z, gb.narrow(0, R * per + a * mb, mb)) * (W / N)).backward();
      opt.after_backward();
      (nll_sum(dp, gb.narrow(0, R * per + a * mb, mb)) * (W / N)).backward();
    }
    const StepResult r = optimizer_step(opt, comm, kLr, kClip, 25.0, true);
    optimizer_step(dp_opt, comm, kLr, kClip, 25.0, true);
    EXPECT_FALSE(r.skipped);
    EXPECT_NEAR(r.grad_norm, norm, 1e-5 * norm) << "step " << step;
  }
  EXPECT_GT(clipped, 0) << "the clip should act in some steps";
  // Compare: stage 3 gathers the full parameters first.
  opt.gather_full();
  double worst = 0, worst_dp = 0, scale = 0, moved = 0;
  auto zp = opt.params();
  for (size_t i = 0; i < zp.size(); ++i) {
    const torch::Tensor a = ref_opt.params()[i].param.detach(), b = zp[i].param.detach();
    ASSERT_EQ(a.sizes(), b.sizes()) << zp[i].name;
    worst = std::max(worst, (a - b).abs().max().item<double>());
    worst_dp = std::max(worst_dp, (dp_opt.params()[i].param.detach() - b).abs().max().item<double>());
    scale = std::max(scale, a.abs().max().item<double>());
  }
  torch::manual_seed(99);
  CausalLM init(zero_config());
  for (size_t i = 0; i + 1 < zp.size(); ++i)
    moved = std::max(moved, (init->named_parameters()[zp[i].name] - zp[i].param).abs().max().item<double>());
  // vs stage 0 on the same ranks: the same shards and micro-batches, only the reduction differs
  EXPECT_LT(worst_dp / scale, 1e-6) << "max |dw| " << worst_dp << " of max |w| " << scale;
  // vs one process on the whole batch: also the BLAS blocking of [2, T] vs [8, T] (as in
  // test_dp_equivalence, whose stage-0 runs differ by up to ~2e-6)
  EXPECT_LT(worst / scale, 1e-5) << "max |dw| " << worst << " of max |w| " << scale;
  EXPECT_GT(moved, 1e-3) << "training should move the weights";
  EXPECT_TRUE(torch::equal(z_unused, torch::full({3, 3}, 0.5))) << "no gradient: no update, no decay";
  std::printf("[rank %d] stage %d: max rel |dw| %.3g vs stage 0 on %d ranks, %.3g vs one process "
              "(moved %.3g)\n", R, static_cast<int>(stage), worst_dp / scale, W, worst / scale, moved);
  // Moments: the gathered by-name moments equal a fresh engine's after load_moments.
  std::vector<torch::Tensor> m, v, m2, v2;
  opt.zero()->gather_moments(m, v);
  opt.release_full();
  opt.zero()->load_moments(m, v);
  opt.zero()->gather_moments(m2, v2);
  for (size_t i = 0; i < m.size(); ++i) EXPECT_TRUE(torch::equal(m[i], m2[i]) && torch::equal(v[i], v2[i]));
  // Held bytes: moments are a 1/W shard (+ padding), at stage >= 2 the gradients too.
  const HeldBytes h = opt.held();
  int64_t full = 0;
  for (const auto& p : ref_opt.params()) full += p.param.nbytes();
  EXPECT_LE(h.optimizer_state, 2 * (full / W + 4 * 4 * W)) << "moments of a 1/W shard";
  if (stage >= ZeroStage::Gradients) {
    EXPECT_LE(h.grads, full / W + 4 * 4 * W);
    // Reduce-scattered during the backward, block by block: at most the rest group's (embeddings,
    // final norm, head; complete only at the end) and one block's full gradients at a time, next
    // to the shard accumulators. Stage 1 holds every full gradient until the step.
    int64_t block_max = 0, blocks = 0;
    for (const auto& b : ref->trunk->block_modules()) {  // (stage 3 frees z's block tensors)
      int64_t n = 0;
      for (const auto& p : b->parameters()) n += p.numel() * 4;
      block_max = std::max(block_max, n);
      blocks += n;
    }
    const int64_t rest = full - 9 * 4 - blocks;  // not the 3x3 "unused" (never has a gradient)
    EXPECT_LE(h.peak_grads, rest + block_max) << "full gradients alive at once";
    EXPECT_LT(h.peak_grads, full) << "a full gradient buffer existed";
    std::printf("[rank %d] stage %d%s: peak gradient bytes %lld of %lld (blocks %lld, rest %lld)\n", R,
                static_cast<int>(stage), checkpointed ? "" : " (no checkpointing)",
                static_cast<long long>(h.peak_grads), static_cast<long long>(full),
                static_cast<long long>(blocks), static_cast<long long>(rest));
  } else {
    EXPECT_GE(h.peak_grads, full - 9 * 4) << "stage 1: the full gradients until the step";
  }
  if (stage == ZeroStage::Parameters) {
    EXPECT_LE(h.params, full / W + 4 * 4 * W);
  }
}

TEST(ZeroOptimizer, Stage1MatchesSingleProcess) { run_sharded(ZeroStage::Optimizer); }
TEST(ZeroOptimizer, Stage2MatchesSingleProcess) { run_sharded(ZeroStage::Gradients); }
// Plain blocks: the block hooks learn of a block's finished backward from a boundary node.
TEST(ZeroOptimizer, Stage2WithoutCheckpointingMatchesSingleProcess) {
  run_sharded(ZeroStage::Gradients, /*checkpointed=*/false);
}
TEST(ZeroOptimizer, Stage3MatchesSingleProcess) { run_sharded(ZeroStage::Parameters); }

}  // namespace
}  // namespace rlhf
