// sft_train — stage 1. Usage: sft_train --config configs/tiny/sft.yaml [--set k=v ...] [--resume]
#include "common/dist/dist.h"
#include "sft/sft_trainer.h"

int main(int argc, char** argv) {
  rlhf::DistRuntime rt(&argc, &argv);
  return rlhf::run_main([&] { return rlhf::run_sft(argc, argv); });
}
