// check.h — checked calls at every C boundary (MPI, HDF5, NCCL), llm.c style.
// Each macro reports file:line, the call text and a hint, then throws rlhf::Error so the
// per-rank handler in dist.h can print the rank and abort the whole job.
#pragma once
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace rlhf {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail_call(const char* file, int line, const char* call, const std::string& what,
                            const char* hint);

}  // namespace rlhf

// Any user-facing precondition: RLHF_CHECK(cond, "fmt {}", args...).
#define RLHF_CHECK(cond, ...)                                                              \
  do {                                                                                     \
    if (!(cond)) throw ::rlhf::Error(fmt::format(__VA_ARGS__));                            \
  } while (0)

#define MPI_CHECK(call)                                                                    \
  do {                                                                                     \
    int mpi_status__ = (call);                                                             \
    if (mpi_status__ != MPI_SUCCESS) {                                                     \
      char mpi_msg__[MPI_MAX_ERROR_STRING];                                                \
      int mpi_len__ = 0;                                                                   \
      MPI_Error_string(mpi_status__, mpi_msg__, &mpi_len__);                               \
      ::rlhf::fail_call(__FILE__, __LINE__, #call, std::string(mpi_msg__, mpi_len__),      \
                        "is every rank calling the same collective in the same order?");   \
    }                                                                                      \
  } while (0)

// HDF5 calls return a negative value (herr_t or hid_t) on failure.
#define H5_CHECK(call, hint)                                                               \
  ([&]() {                                                                                 \
    auto h5_ret__ = (call);                                                                \
    if (h5_ret__ < 0) ::rlhf::fail_call(__FILE__, __LINE__, #call, "HDF5 error", hint);   \
    return h5_ret__;                                                                       \
  }())

#ifdef RLHF_WITH_NCCL
#define NCCL_CHECK(call)                                                                   \
  do {                                                                                     \
    ncclResult_t nccl_status__ = (call);                                                   \
    if (nccl_status__ != ncclSuccess)                                                      \
      ::rlhf::fail_call(__FILE__, __LINE__, #call, ncclGetErrorString(nccl_status__),      \
                        "set NCCL_DEBUG=INFO; check one rank per GPU and matching NCCL"); \
  } while (0)
#endif
