// test_tensors.h — small double-precision tensors written inline, and element-wise comparison,
// for the hand-computed loss tests (tests/common/model, tests/rm, tests/ppo, tests/dpo).
#pragma once
#include <cmath>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace rlhf::testing {

inline torch::Tensor dvec(std::vector<double> v) { return torch::tensor(v, torch::TensorOptions().dtype(torch::kDouble)); }
inline torch::Tensor dmat(std::vector<std::vector<double>> rows) {
  std::vector<torch::Tensor> r;
  for (auto& row : rows) r.push_back(dvec(row));
  return torch::stack(r);
}
inline torch::Tensor bmat(std::vector<std::vector<int>> rows) {
  std::vector<torch::Tensor> r;
  for (auto& row : rows) r.push_back(torch::tensor(std::vector<int64_t>(row.begin(), row.end())));
  return torch::stack(r).to(torch::kBool);
}
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
inline double softplus(double x) { return std::log1p(std::exp(x)); }  // −log σ(−x)

// Every element of t (flattened, as double) within tol of want.
inline void expect_vec(const torch::Tensor& t, std::vector<double> want, double tol = 1e-9) {
  const torch::Tensor f = t.detach().to(torch::kDouble).contiguous().view(-1);
  ASSERT_EQ(f.numel(), static_cast<int64_t>(want.size()));
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(f[static_cast<int64_t>(i)].item<double>(), want[i], tol) << "index " << i;
}

}  // namespace rlhf::testing
