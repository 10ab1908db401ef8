#include "common/dist.h"

#include <mpi.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <iostream>

#include "common/check.h"
#include "common/compat.h"

#ifdef RLHF_WITH_NCCL
#include <c10/cuda/CUDAStream.h>
#include <nccl.h>
#endif

namespace rlhf {

static int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

DistRuntime::DistRuntime(int* argc, char*** argv) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    int provided = 0;
    MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  }
  // Errors from MPI come back as codes (MPI_CHECK turns them into exceptions, then run_main aborts).
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  Communicator& c = world();
  int threads = env_int("RLHF_THREADS", 0);
  if (threads <= 0) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    threads = std::max<long>(1, cores / std::max(1, c.local_size()));
  }
  torch::set_num_threads(threads);
}

DistRuntime::~DistRuntime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

int run_main(const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    int rank = 0, world_size = 1, inited = 0;
    MPI_Initialized(&inited);
    if (inited) {
      MPI_Comm_rank(MPI_COMM_WORLD, &rank);
      MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    }
    std::cerr << "[rank " << rank << "] error: " << e.what() << std::endl;
    if (inited && world_size > 1) MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
}

// ---- Communicator ------------------------------------------------------------------

struct Communicator::Nccl {
#ifdef RLHF_WITH_NCCL
  ncclComm_t comm = nullptr;
  int device = -1;
#endif
};

Communicator::Communicator() {
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_));
  // Local rank from the launcher when it tells us; otherwise from a hostname all-gather.
  int lr = env_int("OMPI_COMM_WORLD_LOCAL_RANK", -1);
  int ls = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", -1);
  if (lr < 0 || ls < 0) {
    char host[256] = {0};
    gethostname(host, sizeof(host) - 1);
    std::vector<char> all(256 * world_);
    MPI_CHECK(MPI_Allgather(host, 256, MPI_CHAR, all.data(), 256, MPI_CHAR, MPI_COMM_WORLD));
    lr = 0;
    ls = 0;
    for (int r = 0; r < world_; ++r) {
      if (std::string(&all[256 * r]) == host) {
        if (r < rank_) ++lr;
        ++ls;
      }
    }
  }
  local_rank_ = lr;
  local_size_ = ls;
}

Communicator::~Communicator() {
#ifdef RLHF_WITH_NCCL
  if (nccl_ && nccl_->comm) ncclCommDestroy(nccl_->comm);
#endif
  delete nccl_;
}

Communicator& world() {
  static Communicator* c = new Communicator();  // lives until exit (after MPI_Finalize is fine)
  return *c;
}

static MPI_Datatype mpi_type(torch::ScalarType st) {
  switch (st) {
    case torch::kFloat: return MPI_FLOAT;
    case torch::kDouble: return MPI_DOUBLE;
    case torch::kInt: return MPI_INT32_T;
    case torch::kLong: return MPI_INT64_T;
    case torch::kByte: return MPI_UINT8_T;
    case torch::kBool: return MPI_C_BOOL;
    default: throw Error(fmt::format("MPI: unsupported dtype {}", c10::toString(st)));
  }
}

void Communicator::init_nccl(const torch::Device& device) {
#ifdef RLHF_WITH_NCCL
  if (nccl_) return;
  nccl_ = new Nccl();
  nccl_->device = device.index();
  ncclUniqueId id;
  if (rank_ == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD));
  NCCL_CHECK(ncclCommInitRank(&nccl_->comm, world_, id, rank_));
#else
  (void)device;
#endif
}

bool Communicator::nccl_ready() const {
#ifdef RLHF_WITH_NCCL
  return nccl_ && nccl_->comm;
#else
  return false;
#endif
}

#ifdef RLHF_WITH_NCCL
static ncclDataType_t nccl_type(torch::ScalarType st) {
  switch (st) {
    case torch::kFloat: return ncclFloat32;
    case torch::kDouble: return ncclFloat64;
    case torch::kHalf: return ncclFloat16;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kInt: return ncclInt32;
    case torch::kLong: return ncclInt64;
    case torch::kByte: return ncclUint8;
    default: throw Error(fmt::format("NCCL: unsupported dtype {}", c10::toString(st)));
  }
}
#endif

void Communicator::all_reduce(torch::Tensor& t, ReduceOp op) {
  RLHF_CHECK(t.is_contiguous(), "all_reduce needs a contiguous tensor");
  if (world_ == 1) return;
#ifdef RLHF_WITH_NCCL
  if (t.is_cuda()) {
    RLHF_CHECK(nccl_ready(), "CUDA tensor all_reduce before init_nccl()");
    ncclRedOp_t nop = op == ReduceOp::Max ? ncclMax : ncclSum;
    auto stream = c10::cuda::getCurrentCUDAStream();
    NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t.scalar_type()),
                             nop, nccl_->comm, stream.stream()));
    if (op == ReduceOp::Avg) t.div_(world_);
    return;
  }
#endif
  RLHF_CHECK(!t.is_cuda(), "CUDA tensor all_reduce in a build without NCCL");
  MPI_Op mop = op == ReduceOp::Max ? MPI_MAX : MPI_SUM;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()),
                          mpi_type(t.scalar_type()), mop, MPI_COMM_WORLD));
  if (op == ReduceOp::Avg) t.div_(world_);
}

void Communicator::broadcast(torch::Tensor& t, int root) {
  RLHF_CHECK(t.is_contiguous(), "broadcast needs a contiguous tensor");
  if (world_ == 1) return;
#ifdef RLHF_WITH_NCCL
  if (t.is_cuda()) {
    RLHF_CHECK(nccl_ready(), "CUDA tensor broadcast before init_nccl()");
    auto stream = c10::cuda::getCurrentCUDAStream();
    NCCL_CHECK(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t.scalar_type()),
                             root, nccl_->comm, stream.stream()));
    return;
  }
#endif
  MPI_CHECK(MPI_Bcast(t.data_ptr(), static_cast<int>(t.numel()), mpi_type(t.scalar_type()), root,
                      MPI_COMM_WORLD));
}

torch::Tensor Communicator::all_gather(const torch::Tensor& t_in) {
  torch::Tensor t = t_in.contiguous();
  std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
  if (shape.empty()) shape.push_back(1);
  shape[0] *= world_;
  torch::Tensor out = torch::empty(shape, t.options());
  if (world_ == 1) return out.copy_(t.reshape(out.sizes()));
#ifdef RLHF_WITH_NCCL
  if (t.is_cuda()) {
    RLHF_CHECK(nccl_ready(), "CUDA tensor all_gather before init_nccl()");
    auto stream = c10::cuda::getCurrentCUDAStream();
    NCCL_CHECK(ncclAllGather(t.data_ptr(), out.data_ptr(), t.numel(), nccl_type(t.scalar_type()),
                             nccl_->comm, stream.stream()));
    return out;
  }
#endif
  MPI_CHECK(MPI_Allgather(t.data_ptr(), static_cast<int>(t.numel()), mpi_type(t.scalar_type()),
                          out.data_ptr(), static_cast<int>(t.numel()), mpi_type(t.scalar_type()),
                          MPI_COMM_WORLD));
  return out;
}

void Communicator::barrier() {
  if (world_ > 1) MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
}

double Communicator::all_reduce_scalar(double v, ReduceOp op) {
  if (world_ == 1) return v;
  double out = 0;
  MPI_CHECK(MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, op == ReduceOp::Max ? MPI_MAX : MPI_SUM,
                          MPI_COMM_WORLD));
  return op == ReduceOp::Avg ? out / world_ : out;
}

std::string Communicator::broadcast_string(const std::string& s, int root) {
  if (world_ == 1) return s;
  int64_t n = static_cast<int64_t>(s.size());
  MPI_CHECK(MPI_Bcast(&n, 1, MPI_INT64_T, root, MPI_COMM_WORLD));
  std::string out = rank_ == root ? s : std::string(n, '\0');
  MPI_CHECK(MPI_Bcast(out.data(), static_cast<int>(n), MPI_CHAR, root, MPI_COMM_WORLD));
  return out;
}

std::vector<std::string> Communicator::all_gather_string(const std::string& s) {
  if (world_ == 1) return {s};
  int n = static_cast<int>(s.size());
  std::vector<int> sizes(world_);
  MPI_CHECK(MPI_Allgather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, MPI_COMM_WORLD));
  std::vector<int> displs(world_, 0);
  for (int r = 1; r < world_; ++r) displs[r] = displs[r - 1] + sizes[r - 1];
  std::string all(displs.back() + sizes.back(), '\0');
  MPI_CHECK(MPI_Allgatherv(s.data(), n, MPI_CHAR, all.data(), sizes.data(), displs.data(),
                           MPI_CHAR, MPI_COMM_WORLD));
  std::vector<std::string> out;
  for (int r = 0; r < world_; ++r) out.push_back(all.substr(displs[r], sizes[r]));
  return out;
}

// ---- data-parallel helpers ---------------------------------------------------------------

void broadcast_parameters(Communicator& comm, const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard ng;
  for (auto p : params) {
    torch::Tensor t = p.detach();
    if (t.is_contiguous()) {
      comm.broadcast(t);
    } else {
      torch::Tensor c = t.contiguous();
      comm.broadcast(c);
      t.copy_(c);
    }
  }
}

void check_consistency(Communicator& comm, const std::string& config_text, int64_t n_params) {
  if (comm.world_size() == 1) return;
  const std::string mine = fmt::format("{:016x}/{}", std::hash<std::string>{}(config_text), n_params);
  auto all = comm.all_gather_string(mine);
  for (int r = 1; r < comm.world_size(); ++r) {
    if (all[r] != all[0]) {
      bool params_differ = all[r].substr(17) != all[0].substr(17);
      throw Error(fmt::format(
          "ranks disagree at start: rank 0 has {} = {}, rank {} has {} (are all ranks given the "
          "same config and --set overrides?)",
          params_differ ? "parameter count" : "config hash", all[0], r, all[r]));
    }
  }
}

void all_reduce_gradients(Communicator& comm, const std::vector<torch::Tensor>& params,
                          double bucket_mb) {
  if (comm.world_size() == 1) return;
  torch::NoGradGuard ng;
  const int64_t bucket_bytes = std::max<int64_t>(1, static_cast<int64_t>(bucket_mb * 1024 * 1024));
  std::vector<torch::Tensor> bucket;
  int64_t bytes = 0;
  auto flush = [&]() {
    if (bucket.empty()) return;
    std::vector<torch::Tensor> flats;
    for (auto& p : bucket) {
      flats.push_back(p.grad().defined() ? p.grad().reshape(-1)
                                         : torch::zeros({p.numel()}, p.options()));
    }
    torch::Tensor flat = torch::cat(flats);  // [sum numel]
    comm.all_reduce(flat, ReduceOp::Avg);
    int64_t off = 0;
    for (auto& p : bucket) {
      auto slice = flat.narrow(0, off, p.numel()).view(p.sizes());
      if (p.grad().defined()) {
        p.mutable_grad().copy_(slice);
      } else {
        p.mutable_grad() = slice.clone();
      }
      off += p.numel();
    }
    bucket.clear();
    bytes = 0;
  };
  for (const auto& p : params) {
    // Group only same-dtype/device tensors into one flat buffer.
    if (!bucket.empty() && (bucket[0].scalar_type() != p.scalar_type() ||
                            bucket[0].device() != p.device()))
      flush();
    bucket.push_back(p);
    bytes += p.numel() * p.element_size();
    if (bytes >= bucket_bytes) flush();
  }
  flush();
}

}  // namespace rlhf
