#include "common/dist/dist.h"

#include <mpi.h>
#include <sched.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <new>
#include <typeinfo>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "common/core/check.h"
#include "common/core/compat.h"

#ifdef RLHF_WITH_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <nccl.h>
#endif

namespace rlhf {

static int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

// Cores this process may run on (cgroup/affinity aware: Slurm and taskset restrict it).
static int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return static_cast<int>(std::max<long>(1, sysconf(_SC_NPROCESSORS_ONLN)));
}

DistRuntime::DistRuntime(int* argc, char*** argv) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    int provided = 0;
    MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  }
  // Errors from MPI come back as codes (MPI_CHECK turns them into exceptions, then run_main
  // prints the rank and message and aborts the job).
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  Communicator& c = world();
  int threads = env_int("RLHF_THREADS", 0);
  if (threads <= 0) threads = std::max(1, usable_cores() / std::max(1, c.local_size()));
  torch::set_num_threads(threads);
}

DistRuntime::~DistRuntime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

// Rank 0's non-zero exit code, for launch/mpirun.sh (mpirun itself reports 1 for any failure).
static void record_exit_status(int rc) {
  const char* path = std::getenv("RLHF_EXIT_STATUS_FILE");
  if (rc == 0 || path == nullptr || *path == '\0') return;
  int rank = 0, inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (inited && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) return;
  if (FILE* f = std::fopen(path, "w")) {
    std::fprintf(f, "%d\n", rc);
    std::fclose(f);
  }
}

std::string describe_current_exception(bool debug) {
  try {
    throw;
  } catch (const Error& e) {
    return e.what();
  } catch (const c10::Error& e) {
    // libtorch appends a 20-frame C++ backtrace to what(); users get the message and its context.
    return fmt::format("libtorch: {}{}", debug ? e.what() : e.what_without_backtrace(),
                       debug ? "" : " (RLHF_DEBUG=1 prints libtorch's backtrace)");
  } catch (const YAML::Exception& e) {
    return fmt::format("YAML: {}", e.what());
  } catch (const nlohmann::json::exception& e) {
    return fmt::format("JSON: {}", e.what());
  } catch (const std::bad_alloc&) {
    return "out of memory (std::bad_alloc): a size from the config, a flag or a file needs more "
           "memory than this process can get; reduce batch or model sizes";
  } catch (const std::exception& e) {
    return debug ? fmt::format("{} ({})", e.what(), typeid(e).name()) : e.what();
  } catch (...) {
    return "unknown exception (not derived from std::exception)";
  }
}

int run_main(const std::function<int()>& body) {
  std::string what;
  try {
    const int rc = body();
    record_exit_status(rc);
    return rc;
  } catch (...) {
    const char* dbg = std::getenv("RLHF_DEBUG");
    what = describe_current_exception(dbg != nullptr && std::string(dbg) == "1");
  }
  int rank = 0, world_size = 1, inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  const bool mpi_up = inited && !finalized;
  if (mpi_up) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  }
  std::fflush(stdout);
  // One write: std::cerr is unbuffered, so piecewise << would reach mpirun as several chunks
  // that interleave with other ranks' output (and break `grep '[rank 1] error: ...'`).
  const std::string line = fmt::format("[rank {}] error: {}\n", rank, what);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
  // MPI_Abort makes mpirun kill every other rank (they may be blocked in a collective waiting
  // for this one) and exit non-zero.
  if (mpi_up && world_size > 1) MPI_Abort(MPI_COMM_WORLD, 1);
  return 1;
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
  // Local rank from Open MPI's launcher when it tells us (it knows its own node layout, also for
  // "nodes" that share a hostname); otherwise the shared-memory split that MPI-3 defines.
  int lr = env_int("OMPI_COMM_WORLD_LOCAL_RANK", -1);
  int ls = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", -1);
  if (lr < 0 || ls < 0) {
    MPI_Comm node;
    MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL,
                                  &node));
    MPI_CHECK(MPI_Comm_rank(node, &lr));
    MPI_CHECK(MPI_Comm_size(node, &ls));
    MPI_Comm_free(&node);
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

torch::Device select_device(const Communicator& comm, bool want_cuda) {
  if (!want_cuda || !torch::cuda::is_available()) return torch::Device(torch::kCPU);
  const int n = static_cast<int>(torch::cuda::device_count());
  RLHF_CHECK(n > 0, "select_device: CUDA available but no visible device");
  const int index = comm.local_rank() % n;
#ifdef RLHF_WITH_NCCL
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(index));
#endif
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

torch::Device parse_device(const std::string& spec, const Communicator& comm,
                           const std::string& what) {
  if (spec.empty() || spec == "auto") return select_device(comm, true);
  if (spec == "cpu") return torch::Device(torch::kCPU);
  RLHF_CHECK(spec == "cuda" || spec.rfind("cuda:", 0) == 0,
             "{} '{}': expected auto, cpu, cuda or cuda:N", what, spec);
  RLHF_CHECK(torch::cuda::is_available(), "{} {}: no CUDA device is visible (or this build of "
             "libtorch has no CUDA)", what, spec);
  if (spec == "cuda") return select_device(comm, true);
  int index = -1;
  try {
    size_t pos = 0;
    index = std::stoi(spec.substr(5), &pos);
    if (pos != spec.size() - 5) index = -1;
  } catch (const std::exception&) {
  }
  const int n = static_cast<int>(torch::cuda::device_count());
  RLHF_CHECK(index >= 0 && index < n, "{} '{}': expected cuda:N with N in [0, {})", what, spec, n);
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

std::vector<std::pair<int64_t, int64_t>> rank_chunks(int64_t n, int64_t chunk,
                                                     const Communicator& comm) {
  RLHF_CHECK(chunk > 0, "rank_chunks: chunk must be > 0, got {}", chunk);
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t s = comm.rank() * chunk; s < n; s += chunk * comm.world_size())
    out.emplace_back(s, std::min(n, s + chunk));
  return out;
}

static MPI_Datatype mpi_type(torch::ScalarType st) {
  switch (st) {
    case torch::kFloat: return MPI_FLOAT;
    case torch::kDouble: return MPI_DOUBLE;
    case torch::kInt: return MPI_INT32_T;
    case torch::kLong: return MPI_INT64_T;
    case torch::kByte: return MPI_UINT8_T;
    case torch::kChar: return MPI_INT8_T;
    case torch::kBool: return MPI_C_BOOL;
    default: throw Error(fmt::format("MPI: unsupported dtype {}", c10::toString(st)));
  }
}

// MPI counts are int: split a long buffer into pieces of at most INT_MAX elements.
template <class F>
static void for_each_mpi_chunk(int64_t numel, F&& f) {
  for (int64_t off = 0; off < numel; off += INT_MAX) {
    f(off, static_cast<int>(std::min<int64_t>(INT_MAX, numel - off)));
  }
}

void Communicator::init_nccl(const torch::Device& device) {
#ifdef RLHF_WITH_NCCL
  if (nccl_) return;
  RLHF_CHECK(device.is_cuda(), "init_nccl: expected a CUDA device, got {}", device.str());
  const int index = device.has_index() ? device.index() : c10::cuda::current_device();
  // ncclCommInitRank binds the communicator to the *current* device: set it first.
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(index));
  ncclUniqueId id;
  if (rank_ == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD));
  auto* n = new Nccl();
  n->device = index;
  ncclResult_t r = ncclCommInitRank(&n->comm, world_, id, rank_);
  if (r != ncclSuccess) delete n;
  NCCL_CHECK(r);
  nccl_ = n;
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
    case torch::kChar: return ncclInt8;
    case torch::kBool: return ncclUint8;  // broadcast / gather only
    default: throw Error(fmt::format("NCCL: unsupported dtype {}", c10::toString(st)));
  }
}

// The tensor's device must be the communicator's; returns that device's current stream, with
// the device made current by `guard` for the duration of the call.
static cudaStream_t nccl_stream(const torch::Tensor& t, int nccl_device, const char* what) {
  RLHF_CHECK(t.device().index() == nccl_device,
             "{}: tensor on {} but NCCL was initialised on cuda:{}", what, t.device().str(),
             nccl_device);
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}
#endif

void Communicator::all_reduce(torch::Tensor& t, ReduceOp op) {
  RLHF_CHECK(t.is_contiguous(), "all_reduce needs a contiguous tensor");
  RLHF_CHECK(t.scalar_type() != torch::kBool, "all_reduce: bool tensors cannot be reduced");
  RLHF_CHECK(op != ReduceOp::Avg || t.is_floating_point(),
             "all_reduce(Avg) needs a floating tensor, got {}", c10::toString(t.scalar_type()));
  // CUDA tensors take the NCCL path even at world size 1 (a cheap copy) so that a 1-GPU run
  // exercises it.
#ifdef RLHF_WITH_NCCL
  if (t.is_cuda()) {
    RLHF_CHECK(nccl_ready(), "CUDA tensor all_reduce before init_nccl()");
    c10::cuda::CUDAGuard guard(t.device());
    cudaStream_t stream = nccl_stream(t, nccl_->device, "all_reduce");
    ncclRedOp_t nop = op == ReduceOp::Max ? ncclMax : ncclSum;
    NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                             nccl_type(t.scalar_type()), nop, nccl_->comm, stream));
    if (op == ReduceOp::Avg) t.div_(world_);  // same (current) stream: ordered after the reduce
    return;
  }
#endif
  RLHF_CHECK(!t.is_cuda(), "CUDA tensor all_reduce in a build without NCCL");
  if (world_ == 1) return;
  MPI_Op mop = op == ReduceOp::Max ? MPI_MAX : MPI_SUM;
  auto* base = static_cast<char*>(t.data_ptr());
  const int64_t esz = t.element_size();
  for_each_mpi_chunk(t.numel(), [&](int64_t off, int count) {
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, base + off * esz, count, mpi_type(t.scalar_type()),
                            mop, MPI_COMM_WORLD));
  });
  if (op == ReduceOp::Avg) t.div_(world_);
}

void Communicator::broadcast(torch::Tensor& t, int root) {
  RLHF_CHECK(t.is_contiguous(), "broadcast needs a contiguous tensor");
#ifdef RLHF_WITH_NCCL
  if (t.is_cuda()) {
    RLHF_CHECK(nccl_ready(), "CUDA tensor broadcast before init_nccl()");
    c10::cuda::CUDAGuard guard(t.device());
    cudaStream_t stream = nccl_stream(t, nccl_->device, "broadcast");
    NCCL_CHECK(ncclBroadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                             nccl_type(t.scalar_type()), root, nccl_->comm, stream));
    return;
  }
#endif
  RLHF_CHECK(!t.is_cuda(), "CUDA tensor broadcast in a build without NCCL");
  if (world_ == 1) return;
  auto* base = static_cast<char*>(t.data_ptr());
  const int64_t esz = t.element_size();
  for_each_mpi_chunk(t.numel(), [&](int64_t off, int count) {
    MPI_CHECK(MPI_Bcast(base + off * esz, count, mpi_type(t.scalar_type()), root,
                        MPI_COMM_WORLD));
  });
}

torch::Tensor Communicator::all_gather(const torch::Tensor& t_in) {
  torch::Tensor t = t_in.contiguous();
  std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
  if (shape.empty()) shape.push_back(1);
  shape[0] *= world_;
  torch::Tensor out = torch::empty(shape, t.options());  // [world * n0, ...]
#ifdef RLHF_WITH_NCCL
  if (t.is_cuda()) {
    RLHF_CHECK(nccl_ready(), "CUDA tensor all_gather before init_nccl()");
    c10::cuda::CUDAGuard guard(t.device());
    cudaStream_t stream = nccl_stream(t, nccl_->device, "all_gather");
    NCCL_CHECK(ncclAllGather(t.data_ptr(), out.data_ptr(), static_cast<size_t>(t.numel()),
                             nccl_type(t.scalar_type()), nccl_->comm, stream));
    return out;
  }
#endif
  RLHF_CHECK(!t.is_cuda(), "CUDA tensor all_gather in a build without NCCL");
  if (world_ == 1) return out.copy_(t.reshape(out.sizes()));
  RLHF_CHECK(t.numel() <= INT_MAX, "all_gather: {} elements per rank exceed MPI's int count",
             t.numel());
  const int n = static_cast<int>(t.numel());
  MPI_CHECK(MPI_Allgather(t.data_ptr(), n, mpi_type(t.scalar_type()), out.data_ptr(), n,
                          mpi_type(t.scalar_type()), MPI_COMM_WORLD));
  return out;
}

torch::Tensor Communicator::reduce_scatter(const torch::Tensor& in_, ReduceOp op) {
  torch::Tensor in = in_.contiguous();
  RLHF_CHECK(in.dim() == 1 && in.numel() % world_ == 0,
             "reduce_scatter: expected a 1-D tensor whose length is a multiple of the world size "
             "{}, got shape [{}]", world_, c10::str(in.sizes()));
  RLHF_CHECK(in.scalar_type() != torch::kBool, "reduce_scatter: bool tensors cannot be reduced");
  RLHF_CHECK(op != ReduceOp::Avg || in.is_floating_point(),
             "reduce_scatter(Avg) needs a floating tensor, got {}", c10::toString(in.scalar_type()));
  const int64_t n = in.numel() / world_;
  torch::Tensor out = torch::empty({n}, in.options());  // [n]
#ifdef RLHF_WITH_NCCL
  if (in.is_cuda()) {
    RLHF_CHECK(nccl_ready(), "CUDA tensor reduce_scatter before init_nccl()");
    c10::cuda::CUDAGuard guard(in.device());
    cudaStream_t stream = nccl_stream(in, nccl_->device, "reduce_scatter");
    ncclRedOp_t nop = op == ReduceOp::Max ? ncclMax : ncclSum;
    NCCL_CHECK(ncclReduceScatter(in.data_ptr(), out.data_ptr(), static_cast<size_t>(n),
                                 nccl_type(in.scalar_type()), nop, nccl_->comm, stream));
    if (op == ReduceOp::Avg) out.div_(world_);  // same (current) stream
    return out;
  }
#endif
  RLHF_CHECK(!in.is_cuda(), "CUDA tensor reduce_scatter in a build without NCCL");
  if (world_ == 1) return out.copy_(in);  // Sum, Avg and Max of one rank
  RLHF_CHECK(n <= INT_MAX, "reduce_scatter: {} elements per rank exceed MPI's int count", n);
  MPI_CHECK(MPI_Reduce_scatter_block(in.data_ptr(), out.data_ptr(), static_cast<int>(n),
                                     mpi_type(in.scalar_type()),
                                     op == ReduceOp::Max ? MPI_MAX : MPI_SUM, MPI_COMM_WORLD));
  if (op == ReduceOp::Avg) out.div_(world_);
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
  RLHF_CHECK(n <= INT_MAX, "broadcast_string: {} bytes exceed MPI's int count", n);
  std::string out = rank_ == root ? s : std::string(static_cast<size_t>(n), '\0');
  MPI_CHECK(MPI_Bcast(out.data(), static_cast<int>(n), MPI_CHAR, root, MPI_COMM_WORLD));
  return out;
}

std::vector<std::string> Communicator::all_gather_string(const std::string& s) {
  if (world_ == 1) return {s};
  RLHF_CHECK(s.size() <= static_cast<size_t>(INT_MAX), "all_gather_string: string too long");
  int n = static_cast<int>(s.size());
  std::vector<int> sizes(world_);
  MPI_CHECK(MPI_Allgather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, MPI_COMM_WORLD));
  std::vector<int> displs(world_, 0);
  int64_t total = sizes[0];
  for (int r = 1; r < world_; ++r) {
    displs[r] = displs[r - 1] + sizes[r - 1];
    total += sizes[r];
  }
  RLHF_CHECK(total <= INT_MAX, "all_gather_string: {} bytes in total exceed MPI's int count",
             total);
  std::string all(static_cast<size_t>(total), '\0');
  MPI_CHECK(MPI_Allgatherv(s.data(), n, MPI_CHAR, all.data(), sizes.data(), displs.data(),
                           MPI_CHAR, MPI_COMM_WORLD));
  std::vector<std::string> out;
  for (int r = 0; r < world_; ++r) out.push_back(all.substr(displs[r], sizes[r]));
  return out;
}

}  // namespace rlhf
