// Collectives over MPI at any world size (ctest runs them under mpirun -np 2). Every expected
// value is computed by hand from the rank-dependent inputs (integer-valued floats, so sums are
// exact regardless of reduction order). Every rank runs the same sequence of collectives, and no
// collective sits behind a rank-dependent assertion, so a failing check cannot hang the job.
#include <gtest/gtest.h>

#include "common/core/check.h"
#include "common/dist/dist.h"

namespace rlhf {
namespace {

int W() { return world().world_size(); }
int R() { return world().rank(); }

TEST(Comm, RanksAndLocalLayout) {
  auto& c = world();
  ASSERT_GE(c.rank(), 0);
  ASSERT_LT(c.rank(), c.world_size());
  ASSERT_GE(c.local_rank(), 0);
  ASSERT_LT(c.local_rank(), c.local_size());
  ASSERT_LE(c.local_size(), c.world_size());
  // Every node has exactly one local rank 0 and its local_size ranks: summing local_size over the
  // local roots counts every rank once.
  double covered = c.all_reduce_scalar(c.local_rank() == 0 ? c.local_size() : 0.0);
  EXPECT_EQ(covered, c.world_size());
  EXPECT_EQ(c.is_root(), c.rank() == 0);
}

TEST(Comm, AllReduceSumAvgMax) {
  // rank r holds [r+1, 10(r+1), -(r+1), 7]
  auto make = [] {
    float r = static_cast<float>(R() + 1);
    return torch::tensor({r, 10 * r, -r, 7.f});  // [4]
  };
  const float s = W() * (W() + 1) / 2.0f;  // sum over ranks of (r+1)
  torch::Tensor t = make();
  world().all_reduce(t, ReduceOp::Sum);
  EXPECT_TRUE(torch::equal(t, torch::tensor({s, 10 * s, -s, 7.f * W()})));

  t = make();
  world().all_reduce(t, ReduceOp::Avg);
  const float m = (W() + 1) / 2.0f;
  EXPECT_TRUE(torch::allclose(t, torch::tensor({m, 10 * m, -m, 7.f}), 0, 0)) << t;

  t = make();
  world().all_reduce(t, ReduceOp::Max);
  EXPECT_TRUE(torch::equal(t, torch::tensor({float(W()), 10.f * W(), -1.f, 7.f}))) << t;

  // int64 and a 2-D double tensor
  torch::Tensor i = torch::full({3}, int64_t(R() + 1), torch::kLong);
  world().all_reduce(i);
  EXPECT_TRUE(torch::equal(i, torch::full({3}, int64_t(s), torch::kLong)));
  torch::Tensor d = torch::arange(6, torch::kDouble).view({2, 3}) * (R() + 1);  // [2, 3]
  world().all_reduce(d, ReduceOp::Max);
  EXPECT_TRUE(torch::equal(d, torch::arange(6, torch::kDouble).view({2, 3}) * W()));
}

TEST(Comm, AllReduceRejectsBadInputsOnEveryRank) {
  torch::Tensor nc = torch::zeros({3, 4}).t();  // non-contiguous
  EXPECT_THROW(world().all_reduce(nc), Error);
  torch::Tensor i = torch::ones({2}, torch::kLong);
  EXPECT_THROW(world().all_reduce(i, ReduceOp::Avg), Error);
}

TEST(Comm, AllReduceScalar) {
  const double r = R() + 1;
  EXPECT_EQ(world().all_reduce_scalar(r), W() * (W() + 1) / 2.0);
  EXPECT_EQ(world().all_reduce_scalar(r, ReduceOp::Avg), (W() + 1) / 2.0);
  EXPECT_EQ(world().all_reduce_scalar(r, ReduceOp::Max), double(W()));
}

TEST(Comm, BroadcastFromEveryRoot) {
  for (int root = 0; root < W(); ++root) {
    torch::Tensor t = torch::full({2, 3}, float(100 * R() + 5));  // [2, 3]
    world().broadcast(t, root);
    EXPECT_TRUE(torch::equal(t, torch::full({2, 3}, float(100 * root + 5)))) << "root " << root;
    torch::Tensor b = torch::tensor({R() == root, R() != root});  // bool
    world().broadcast(b, root);
    EXPECT_TRUE(b[0].item<bool>());
    EXPECT_FALSE(b[1].item<bool>());
  }
}

TEST(Comm, AllGatherTensors) {
  // rank r: [[r*100 + 0, r*100 + 1, r*100 + 2], [r*100 + 3, ...]]  -> [2, 3]
  torch::Tensor t = torch::arange(6, torch::kFloat).view({2, 3}) + 100.f * R();
  torch::Tensor all = world().all_gather(t);  // [2W, 3]
  ASSERT_EQ(all.sizes(), (std::vector<int64_t>{2 * W(), 3}));
  for (int r = 0; r < W(); ++r) {
    EXPECT_TRUE(torch::equal(all.narrow(0, 2 * r, 2),
                             torch::arange(6, torch::kFloat).view({2, 3}) + 100.f * r))
        << "block of rank " << r;
  }
  // 0-d input gathers into [W]; int64 keeps its dtype.
  torch::Tensor s = torch::tensor(int64_t(7 * R()));
  torch::Tensor g = world().all_gather(s);  // [W]
  ASSERT_EQ(g.dim(), 1);
  for (int r = 0; r < W(); ++r) EXPECT_EQ(g[r].item<int64_t>(), 7 * r);
}

TEST(Comm, StringsGatherAndBroadcast) {
  // Ragged lengths including an empty string on rank 1.
  const std::string mine = R() == 1 ? std::string() : std::string(R() + 1, char('a' + R()));
  auto all = world().all_gather_string(mine);
  ASSERT_EQ(int(all.size()), W());
  for (int r = 0; r < W(); ++r) {
    EXPECT_EQ(all[r], r == 1 ? std::string() : std::string(r + 1, char('a' + r)));
  }
  std::string b = world().broadcast_string(R() == 0 ? "from root: \xce\xbb ok" : "xx");
  EXPECT_EQ(b, "from root: \xce\xbb ok");
}

// Parameters with rank-dependent gradients: grad_r(p_k) = (r + 1) * (k + 1) * arange(numel).
std::vector<torch::Tensor> make_params(const std::vector<std::vector<int64_t>>& shapes) {
  std::vector<torch::Tensor> ps;
  for (size_t k = 0; k < shapes.size(); ++k) {
    auto p = torch::zeros(shapes[k], torch::requires_grad());
    p.mutable_grad() = torch::arange(p.numel(), torch::kFloat).view(shapes[k]) *
                       float((R() + 1) * (k + 1));
    ps.push_back(p);
  }
  return ps;
}

TEST(Comm, AllReduceGradientsAveragesAcrossBucketSizes) {
  const std::vector<std::vector<int64_t>> shapes = {{3, 4}, {5}, {2, 2, 2}, {7}, {1}};
  const float mean = (W() + 1) / 2.0f;  // mean over ranks of (r+1)
  // 1 byte: one parameter per bucket; 40 bytes: 10 floats, so buckets end mid-list at different
  // parameters; 16 MB: a single bucket.
  for (double mb : {1.0 / (1024 * 1024), 40.0 / (1024 * 1024), 16.0}) {
    auto ps = make_params(shapes);
    all_reduce_gradients(world(), ps, mb);
    for (size_t k = 0; k < ps.size(); ++k) {
      auto want = torch::arange(ps[k].numel(), torch::kFloat).view(shapes[k]) * (mean * (k + 1));
      EXPECT_TRUE(torch::allclose(ps[k].grad(), want, 0, 0))
          << "bucket_mb " << mb << " param " << k << ": " << ps[k].grad();
    }
  }
}

TEST(Comm, AllReduceGradientsMissingGrads) {
  auto ps = make_params({{4}, {3}, {2}});
  // param 1: only rank 0 has a gradient; param 2: no rank has one.
  if (R() != 0) ps[1].mutable_grad() = torch::Tensor();
  ps[2].mutable_grad() = torch::Tensor();
  all_reduce_gradients(world(), ps, 8.0 / (1024 * 1024));  // 2 floats per bucket
  const float mean = (W() + 1) / 2.0f;
  EXPECT_TRUE(torch::allclose(ps[0].grad(), torch::arange(4, torch::kFloat) * mean, 0, 0));
  // Rank 0's values (r + 1 = 1, k + 1 = 2) averaged with zeros from the other ranks.
  ASSERT_TRUE(ps[1].grad().defined());
  EXPECT_TRUE(torch::allclose(ps[1].grad(), torch::arange(3, torch::kFloat) * (2.0f / W()), 0, 0))
      << ps[1].grad();
  EXPECT_FALSE(ps[2].grad().defined()) << "a parameter no rank computed a gradient for";
}

TEST(Comm, BroadcastParametersIncludingNonContiguous) {
  auto a = torch::full({2, 3}, float(R() + 1));                      // [2, 3]
  auto base = torch::arange(12, torch::kFloat).view({3, 4}) * (R() + 1);  // [3, 4]
  auto b = base.t();  // [4, 3] non-contiguous view of `base`
  auto c = torch::full({5}, int64_t(10 * R()), torch::kLong);
  broadcast_parameters(world(), {a, b, c});
  EXPECT_TRUE(torch::equal(a, torch::full({2, 3}, 1.f)));
  EXPECT_TRUE(torch::equal(base, torch::arange(12, torch::kFloat).view({3, 4})))
      << "the view's storage must receive rank 0's values";
  EXPECT_TRUE(torch::equal(c, torch::zeros({5}, torch::kLong)));
}

TEST(Comm, CheckConsistencyAgreeing) {
  EXPECT_NO_THROW(check_consistency(world(), "model:\n  d_model: 64\nlr: 0.001\n", 1234));
}

TEST(Comm, CheckConsistencyNamesTheDifferingLine) {
  if (W() < 2) GTEST_SKIP() << "needs 2 ranks (run under mpirun -np 2)";
  const std::string cfg0 = "model:\n  d_model: 64\nlr: 0.001\n";
  const std::string cfg1 = "model:\n  d_model: 64\nlr: 0.002\n";
  // Rank 1 differs; every rank must throw (a throw on one rank only would hang the others).
  try {
    check_consistency(world(), R() == 1 ? cfg1 : cfg0, 1234);
    ADD_FAILURE() << "rank " << R() << " did not throw";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("config line 3"), std::string::npos) << m;
    EXPECT_NE(m.find("'lr: 0.001' on rank 0"), std::string::npos) << m;
    EXPECT_NE(m.find("'lr: 0.002' on rank 1"), std::string::npos) << m;
  }
  // Same text, different parameter counts.
  try {
    check_consistency(world(), cfg0, R() == 1 ? 999 : 1234);
    ADD_FAILURE() << "rank " << R() << " did not throw";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("rank 0 has 1234 parameters, rank 1 has 999"), std::string::npos) << m;
  }
  // A config that is a prefix of the other (rank 1 has an extra line).
  try {
    check_consistency(world(), R() == 1 ? cfg0 + "extra: 1\n" : cfg0, 1);
    ADD_FAILURE() << "rank " << R() << " did not throw";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("config line 4 is '<end of text>' on rank 0 but 'extra: 1' on rank 1"), std::string::npos)
        << m;
  }
}

TEST(Comm, SelectDeviceCpu) {
  EXPECT_EQ(select_device(world(), false), torch::Device(torch::kCPU));
  if (!torch::cuda::is_available()) {
    EXPECT_EQ(select_device(world(), true), torch::Device(torch::kCPU));
  } else {
    auto d = select_device(world(), true);
    EXPECT_EQ(d.index(), world().local_rank() % int(torch::cuda::device_count()));
  }
}

// rank_chunks: every row of [0, n) lands in exactly one rank's chunks, in chunks of at most
// `chunk` rows, for ragged n (n = 0, n < chunk, n not a multiple of chunk * world).
TEST(Comm, RankChunksCoverEveryRowOnce) {
  for (int64_t n : {0, 1, 5, 7, 23}) {
    for (int64_t chunk : {1, 2, 4}) {
      auto seen = torch::zeros({n + 1}, torch::kFloat);  // +1: never empty
      for (auto [b, e] : rank_chunks(n, chunk, world())) {
        EXPECT_LT(b, e);
        EXPECT_LE(e - b, chunk);
        seen.narrow(0, b, e - b).add_(1);
      }
      world().all_reduce(seen);
      EXPECT_TRUE(seen.narrow(0, 0, n).eq(1).all().item<bool>()) << "n " << n << " chunk " << chunk;
    }
  }
}

}  // namespace
}  // namespace rlhf
