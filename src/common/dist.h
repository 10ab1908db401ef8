// dist.h — process runtime and collectives for data-parallel training.
//
// Contract:
// - One DistRuntime per process, created first thing in main(); it calls MPI_Init_thread, sets
//   libtorch's thread count (RLHF_THREADS, else cores / local ranks), and installs the fatal-error
//   path: run_main() catches any exception on any rank, prints "[rank R] error: ..." and calls
//   MPI_Abort so the whole job ends non-zero (never a hang).
// - Communicator: every rank must call every collective in the same order. CPU tensors go over
//   MPI; CUDA tensors over NCCL (CUDA builds; ncclUniqueId broadcast from rank 0 by MPI_Bcast).
//   Tensors must be contiguous; results are written in place where the name says so.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace rlhf {

class DistRuntime {
 public:
  DistRuntime(int* argc, char*** argv);
  ~DistRuntime();
  DistRuntime(const DistRuntime&) = delete;
};

// Runs body(); on exception prints the rank and message to stderr and aborts the job.
int run_main(const std::function<int()>& body);

enum class ReduceOp { Sum, Avg, Max };

class Communicator {
 public:
  Communicator();  // MPI_COMM_WORLD
  ~Communicator();
  int rank() const { return rank_; }
  int world_size() const { return world_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  bool is_root() const { return rank_ == 0; }

  void all_reduce(torch::Tensor& t, ReduceOp op = ReduceOp::Sum);  // in place
  void broadcast(torch::Tensor& t, int root = 0);                  // in place
  torch::Tensor all_gather(const torch::Tensor& t);  // [world * t.size(0), ...] (same shapes)
  void barrier();
  double all_reduce_scalar(double v, ReduceOp op = ReduceOp::Sum);
  std::string broadcast_string(const std::string& s, int root = 0);
  std::vector<std::string> all_gather_string(const std::string& s);

  // Enable the NCCL path for CUDA tensors on `device` (no-op in CPU builds). Idempotent.
  void init_nccl(const torch::Device& device);
  bool nccl_ready() const;

 private:
  int rank_ = 0, world_ = 1, local_rank_ = 0, local_size_ = 1;
  struct Nccl;
  Nccl* nccl_ = nullptr;
};

// The process-wide communicator (created on first use, after DistRuntime).
Communicator& world();

// Data-parallel helpers over a module's parameters.
// broadcast_parameters: rank 0's values everywhere (start of training).
void broadcast_parameters(Communicator& comm, const std::vector<torch::Tensor>& params);
// Check every rank agrees on a config hash and a parameter count; throws naming the difference.
void check_consistency(Communicator& comm, const std::string& config_text, int64_t n_params);
// Average gradients over ranks in flat buckets of at most bucket_mb megabytes. Parameters without
// a gradient contribute zeros (so every rank issues the same collectives).
void all_reduce_gradients(Communicator& comm, const std::vector<torch::Tensor>& params,
                          double bucket_mb);

}  // namespace rlhf
