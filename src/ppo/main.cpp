// ppo_train — stage 3. Usage: ppo_train --config configs/tiny/ppo.yaml [--set k=v ...] [--resume]
#include "common/dist/dist.h"
#include "common/train/run.h"
#include "ppo/ppo_trainer.h"
#include "common/core/process.h"

int main(int argc, char** argv) {
  rlhf::choose_omp_wait_policy(argv);  // first: the OpenMP runtime reads it at load (process.h)
  rlhf::install_stop_signals();  // first thing: SIGTERM / SIGUSR1 during start-up stop the run cleanly
  rlhf::DistRuntime rt(&argc, &argv);
  return rlhf::run_main([&] { return rlhf::run_ppo(argc, argv); });
}
