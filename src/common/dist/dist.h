// dist.h — process runtime and collectives for data-parallel training.
//
// Contract:
// - One DistRuntime per process, created first thing in main(); it calls MPI_Init_thread, sets
//   libtorch's thread count (RLHF_THREADS, else usable cores / ranks on this node), and installs
//   the fatal-error path: run_main() catches any exception on any rank, prints
//   "[rank R] error: ..." to stderr and calls MPI_Abort so the whole job ends non-zero (never a
//   hang). A rank that dies without an exception (SIGKILL, OOM killer, segfault) is handled by
//   the launcher: Open MPI's mpirun kills the other ranks and exits non-zero (docs/DISTRIBUTED.md).
// - Communicator: every rank must call every collective in the same order with the same shapes
//   and dtypes. CPU tensors go over MPI; CUDA tensors over NCCL (CUDA builds only, after
//   init_nccl(); the ncclUniqueId is broadcast from rank 0 with MPI_Bcast). NCCL calls are issued
//   on the tensor's device's current CUDA stream, so results are ordered with later kernels on
//   that stream without any synchronisation by the caller. Tensors must be contiguous; results
//   are written in place where the name says so. Only the thread that created DistRuntime may
//   call collectives (MPI_THREAD_FUNNELED).
// - Data parallelism (see all_reduce_gradients): each rank runs forward/backward on its own
//   shard, then gradients are averaged over ranks. The average equals the gradient of the global
//   loss only when each rank's loss is scaled so that mean_over_ranks(loss_r) == global loss.
//   For a per-token mean over ragged shards use loss_r = sum_r(token losses) * world / N, with
//   N = all_reduce_scalar(local token count) (the mean of per-rank means is wrong when shards
//   have different token counts).
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

// Runs body(); on any exception prints "[rank R] error: <message>" to stderr and calls MPI_Abort
// (world size > 1) or returns 1 (world size 1). Library exceptions are reported by
// describe_current_exception, without libtorch's backtrace unless RLHF_DEBUG=1.
int run_main(const std::function<int()>& body);

// The message for the exception being handled (call inside a catch block): ours as they are;
// libtorch's without its C++ backtrace (with it when `debug`), YAML / JSON library errors with the
// library named; std::bad_alloc as out of memory with what to reduce.
std::string describe_current_exception(bool debug);

enum class ReduceOp { Sum, Avg, Max };

class Communicator {
 public:
  Communicator();  // MPI_COMM_WORLD; collective (all ranks construct it together)
  ~Communicator();
  int rank() const { return rank_; }
  int world_size() const { return world_; }
  int local_rank() const { return local_rank_; }  // index among the ranks on this node
  int local_size() const { return local_size_; }  // ranks on this node
  bool is_root() const { return rank_ == 0; }

  // Avg needs a floating dtype; bool tensors can be broadcast/gathered but not reduced.
  void all_reduce(torch::Tensor& t, ReduceOp op = ReduceOp::Sum);  // in place
  void broadcast(torch::Tensor& t, int root = 0);                  // in place
  torch::Tensor all_gather(const torch::Tensor& t);  // [world * t.size(0), ...] (same shapes)
  // Reduce-scatter: `in` is [world * n] (1-D, contiguous, same numel on every rank); returns this
  // rank's [n] = op over ranks r' of in_{r'}[rank*n, (rank+1)*n). Avg = Sum / world (floating
  // dtypes only). MPI_Reduce_scatter_block for CPU tensors, ncclReduceScatter for CUDA ones; the
  // caller pads the buffer to a multiple of world. REQUIRES: n <= INT_MAX on the MPI path.
  torch::Tensor reduce_scatter(const torch::Tensor& in, ReduceOp op = ReduceOp::Sum);
  void barrier();
  double all_reduce_scalar(double v, ReduceOp op = ReduceOp::Sum);
  std::string broadcast_string(const std::string& s, int root = 0);
  std::vector<std::string> all_gather_string(const std::string& s);  // [world], any lengths

  // Enable the NCCL path for CUDA tensors on `device` (no-op in CPU builds). Idempotent;
  // collective. Makes `device` the current CUDA device of this process.
  void init_nccl(const torch::Device& device);
  bool nccl_ready() const;

 private:
  int rank_ = 0, world_ = 1, local_rank_ = 0, local_size_ = 1;
  struct Nccl;
  Nccl* nccl_ = nullptr;
};

// The process-wide communicator (created on first use, after DistRuntime).
Communicator& world();

// The device this rank should train on: cuda:(local_rank % visible GPU count) when want_cuda and
// CUDA is available (and made the current device), else CPU. With one rank per GPU on each node
// (launch/mpirun.sh, launch/slurm.sbatch) every rank gets its own GPU; with a per-rank
// CUDA_VISIBLE_DEVICES (one visible GPU each) every rank gets cuda:0. Callers that require CUDA
// must check the result's type.
torch::Device select_device(const Communicator& comm, bool want_cuda);
// The one parser of a device flag or key: "auto" or "" = select_device(comm, true); "cpu";
// "cuda" (this rank's GPU, as select_device); "cuda:N". Throws rlhf::Error naming `what` when
// CUDA is asked for but not available (or N is not a visible device) or the text is not a device.
torch::Device parse_device(const std::string& spec, const Communicator& comm,
                           const std::string& what = "--device");

// The rank-sharded evaluation loop: [0, n) cut into chunks of `chunk` rows, chunk c handled by
// rank c % world. Returns this rank's chunks as [begin, end) in order; every row is in exactly
// one rank's list, so sums all-reduced afterwards equal a one-rank pass. REQUIRES: chunk > 0.
std::vector<std::pair<int64_t, int64_t>> rank_chunks(int64_t n, int64_t chunk,
                                                     const Communicator& comm);

// Data-parallel helpers over a module's parameters.
// broadcast_parameters: rank 0's values everywhere (start of training). Collective.
void broadcast_parameters(Communicator& comm, const std::vector<torch::Tensor>& params);
// Check every rank agrees on the config text and a parameter count; throws rlhf::Error on every
// rank (never on only some, which would hang the others) naming the first rank that differs from
// rank 0, and the first differing config line or the two parameter counts. Collective.
void check_consistency(Communicator& comm, const std::string& config_text, int64_t n_params);
// Average gradients over ranks in flat buckets of at most bucket_mb megabytes (a parameter larger
// than a bucket travels alone). A parameter without a gradient on some ranks contributes zeros
// there (so every rank issues the same collectives) and gets the averaged gradient afterwards; a
// parameter without a gradient on every rank keeps an undefined gradient (the optimizer skips it,
// as it would in single-process training). Collective; params in the same order on every rank.
void all_reduce_gradients(Communicator& comm, const std::vector<torch::Tensor>& params,
                          double bucket_mb);

}  // namespace rlhf
