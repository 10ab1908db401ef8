// NCCL path of the Communicator (CUDA builds only: RLHF_WITH_NCCL). Runs with any number of ranks
// as long as every rank on a node gets its own GPU (NCCL refuses two ranks on one device), e.g.
//   build/bin/rlhf_mpi_tests --gtest_filter='Nccl*'             (1 rank, 1 GPU)
//   launch/mpirun.sh 2 build/bin/rlhf_mpi_tests --gtest_filter='Nccl*'   (2 GPUs)
// and skips (on every rank alike) otherwise. At world size 1 the CUDA collectives still go through
// NCCL (see dist.cpp), so a single GPU exercises the calls, streams and dtypes.
#ifdef RLHF_WITH_NCCL
#include <gtest/gtest.h>

#include "common/core/check.h"
#include "common/dist/dist.h"
#include "common/model/model.h"

namespace rlhf {
namespace {

// Same decision on every rank: CUDA present and one GPU per local rank everywhere.
bool nccl_usable() {
  const bool ok = torch::cuda::is_available() &&
                  static_cast<int64_t>(torch::cuda::device_count()) >= world().local_size();
  return world().all_reduce_scalar(ok ? 0.0 : 1.0, ReduceOp::Max) == 0.0;
}

torch::Device nccl_device() {
  torch::Device d = select_device(world(), /*want_cuda=*/true);
  world().init_nccl(d);
  return d;
}

TEST(Nccl, CollectivesMatchHandComputedValues) {
  if (!nccl_usable()) GTEST_SKIP() << "needs CUDA and one GPU per rank on each node";
  const torch::Device dev = nccl_device();
  ASSERT_TRUE(world().nccl_ready());
  ASSERT_EQ(dev.index(), world().local_rank() % int(torch::cuda::device_count()));
  const int W = world().world_size(), R = world().rank();
  const float s = W * (W + 1) / 2.0f;

  auto make = [&] { return torch::full({1000}, float(R + 1), torch::dtype(torch::kFloat).device(dev)); };
  torch::Tensor t = make();
  world().all_reduce(t, ReduceOp::Sum);
  EXPECT_TRUE(torch::equal(t.cpu(), torch::full({1000}, s)));
  t = make();
  world().all_reduce(t, ReduceOp::Avg);
  EXPECT_TRUE(torch::equal(t.cpu(), torch::full({1000}, s / W)));
  t = make();
  world().all_reduce(t, ReduceOp::Max);
  EXPECT_TRUE(torch::equal(t.cpu(), torch::full({1000}, float(W))));

  // bf16 and int64 (small integers are exact in bf16)
  torch::Tensor b = torch::full({64}, float(R + 1), torch::dtype(torch::kBFloat16).device(dev));
  world().all_reduce(b);
  EXPECT_TRUE(torch::equal(b.cpu().to(torch::kFloat), torch::full({64}, s)));
  torch::Tensor i = torch::full({5}, int64_t(R + 1), torch::dtype(torch::kLong).device(dev));
  world().all_reduce(i);
  EXPECT_TRUE(torch::equal(i.cpu(), torch::full({5}, int64_t(s), torch::kLong)));

  torch::Tensor bc = torch::full({3, 4}, float(10 * R + 3), torch::dtype(torch::kFloat).device(dev));
  world().broadcast(bc, 0);
  EXPECT_TRUE(torch::equal(bc.cpu(), torch::full({3, 4}, 3.f)));

  torch::Tensor g = world().all_gather(
      torch::arange(4, torch::dtype(torch::kFloat).device(dev)) + 100.f * R);  // [4] -> [4W]
  ASSERT_EQ(g.size(0), 4 * W);
  for (int r = 0; r < W; ++r)
    EXPECT_TRUE(torch::equal(g.narrow(0, 4 * r, 4).cpu(), torch::arange(4, torch::kFloat) + 100.f * r));

  // A tensor on another device than the communicator's is refused with a message.
  if (torch::cuda::device_count() > 1) {
    torch::Tensor other = torch::ones({2}, torch::dtype(torch::kFloat).device(
                                               torch::Device(torch::kCUDA, (dev.index() + 1) % 2)));
    EXPECT_THROW(world().all_reduce(other), Error);
  }
}

// One data-parallel training step on the GPU (NCCL gradient all-reduce) against the same step on
// the CPU in fp32: equal loss and weights up to GPU-vs-CPU kernel rounding.
TEST(Nccl, CudaTrainStepMatchesCpu) {
  if (!nccl_usable()) GTEST_SKIP() << "needs CUDA and one GPU per rank on each node";
  const torch::Device dev = nccl_device();
  ModelConfig cfg;
  cfg.family = Family::Llama;
  cfg.vocab_size = 64;
  cfg.n_layer = 2;
  cfg.n_head = 4;
  cfg.n_kv_head = 2;
  cfg.d_model = 32;
  cfg.d_ff = 64;
  cfg.max_seq_len = 16;
  torch::manual_seed(7);
  CausalLM cpu(cfg);
  torch::manual_seed(7);
  CausalLM gpu(cfg);
  gpu->to(dev);
  broadcast_parameters(world(), gpu->parameters());  // NCCL broadcast (rank 0's = same seed)

  auto gen = at::detail::createCPUGenerator(11);
  torch::Tensor tokens = torch::randint(0, cfg.vocab_size, {4, 12}, gen, torch::kLong);  // [B, T]
  torch::Tensor mask = torch::ones({4, 12}, torch::kBool);                               // [B, T]
  auto step = [&](CausalLM& m, const torch::Device& d) {
    torch::optim::SGD opt(m->parameters(), torch::optim::SGDOptions(0.1));
    opt.zero_grad();
    torch::Tensor tk = tokens.to(d), mk = mask.to(d);
    torch::Tensor logits = m->forward(tk, positions_from_mask(mk), mk);  // [B, T, V]
    torch::Tensor loss = torch::nn::functional::cross_entropy(
        logits.narrow(1, 0, 11).reshape({-1, cfg.vocab_size}), tk.narrow(1, 1, 11).reshape({-1}));
    loss.backward();
    all_reduce_gradients(world(), m->parameters(), 0.01);  // every rank has the same batch
    opt.step();
    return loss.item<double>();
  };
  const double l_cpu = step(cpu, torch::Device(torch::kCPU));
  const double l_gpu = step(gpu, dev);
  EXPECT_NEAR(l_gpu, l_cpu, 1e-4 * std::abs(l_cpu));
  double max_dw = 0;
  auto pc = cpu->parameters(), pg = gpu->parameters();
  for (size_t k = 0; k < pc.size(); ++k)
    max_dw = std::max(max_dw, (pc[k] - pg[k].cpu()).abs().max().item<double>());
  EXPECT_LT(max_dw, 1e-4);
  std::printf("[rank %d] cuda train step: loss cpu %.6f gpu %.6f, max |dw| %.3g\n", world().rank(),
              l_cpu, l_gpu, max_dw);
}

}  // namespace
}  // namespace rlhf
#endif  // RLHF_WITH_NCCL
