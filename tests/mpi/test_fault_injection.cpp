// Fault injection for tests/scripts/test_failure.sh. These tests are DISABLED_ so a normal run
// skips them: they end the whole MPI job on purpose. The script runs them with
//   mpirun -np 2 rlhf_mpi_tests --gtest_also_run_disabled_tests --gtest_filter=DISABLED_Fault...
// and checks that mpirun exits non-zero promptly with the failing rank and message in its output.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "common/core/check.h"
#include "common/dist/dist.h"

namespace rlhf {
namespace {

// A "training step": one all-reduce that every rank must join.
void fake_step(int step) {
  torch::Tensor g = torch::full({1024}, float(step));  // [1024]
  world().all_reduce(g, ReduceOp::Avg);
  RLHF_CHECK(g[0].item<float>() == float(step), "step {}: all-reduce gave {}", step,
             g[0].item<float>());
}

TEST(FaultInjection, DISABLED_ThrowOnRank1AtStep3) {
  ASSERT_GE(world().world_size(), 2) << "run under mpirun -np 2";
  int rc = run_main([] {
    for (int step = 0; step < 10; ++step) {
      fake_step(step);
      std::printf("[rank %d] step %d done\n", world().rank(), step);
      std::fflush(stdout);
      if (world().rank() == 1 && step == 3) {
        throw Error("injected failure at step 3 (fault-injection test)");
      }
    }
    return 0;
  });
  // Only reachable if run_main failed to abort the job.
  ADD_FAILURE() << "run_main returned " << rc << " instead of aborting the job";
}

// Collectives for RLHF_FAULT_SECONDS (default 120) seconds. Each rank writes its pid to
// $RLHF_FAULT_PID_DIR/rank<R>.pid once the first step has completed, so the script can kill one.
TEST(FaultInjection, DISABLED_LongRunning) {
  const char* secs_env = std::getenv("RLHF_FAULT_SECONDS");
  const double secs = secs_env ? std::atof(secs_env) : 120.0;
  const char* dir = std::getenv("RLHF_FAULT_PID_DIR");
  int rc = run_main([&] {
    auto t0 = std::chrono::steady_clock::now();
    for (int step = 0;; ++step) {
      fake_step(step);
      if (step == 0 && dir) {
        std::ofstream(std::string(dir) + "/rank" + std::to_string(world().rank()) + ".pid")
            << getpid() << "\n";
      }
      // Every rank decides to stop at the same step (rank 0's clock), so none is left waiting.
      double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (world().all_reduce_scalar(world().is_root() ? elapsed : 0.0) >= secs) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

}  // namespace
}  // namespace rlhf
