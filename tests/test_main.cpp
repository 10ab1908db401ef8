// Shared gtest main: initialises MPI (singleton when not under mpirun) so communicator code can be
// tested at world size 1 and 2 alike, and sets libtorch's thread count explicitly.
#include <gtest/gtest.h>
#include <mpi.h>

#include "common/dist/dist.h"
#include "common/core/process.h"

int main(int argc, char** argv) {
  rlhf::choose_omp_wait_policy(argv);  // first: the OpenMP runtime reads it at load (process.h)
  ::testing::InitGoogleTest(&argc, argv);
  rlhf::DistRuntime rt(&argc, &argv);  // MPI_Init + per-rank thread count; finalizes on exit
  return RUN_ALL_TESTS();
}
