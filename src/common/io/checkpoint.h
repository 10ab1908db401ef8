// checkpoint.h — training checkpoints: run.dir/checkpoints/step_NNNNNNNN/{model.h5, optim.h5, state.yaml}
// (PPO adds critic.h5). Written by rank 0 into a hidden temporary directory, fsync'd, renamed into
// place, and only then is `checkpoints/latest` (a one-line text file naming the directory) replaced
// atomically; so a crash mid-save never leaves a checkpoint that resume would pick. Older
// checkpoints beyond keep_last are deleted after the new one is in place.
// Contract: save() and find_latest() are collective (all ranks call; rank 0 writes, then a barrier).
#pragma once
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/dist/dist.h"

namespace rlhf {

class CheckpointManager {
 public:
  CheckpointManager(std::string run_dir, int64_t keep_last, Communicator& comm);
  const std::string& root() const { return root_; }
  // write(dir) fills a fresh directory (rank 0 only). Returns the final checkpoint path.
  std::string save(int64_t step, const std::function<void(const std::string& dir)>& write);
  // Newest complete checkpoint, or "" when none. Never returns a temporary or incomplete one.
  std::string find_latest() const;
  // Throws a clear error unless dir holds a complete, readable checkpoint.
  static void validate(const std::string& dir);

 private:
  std::string run_dir_, root_;
  int64_t keep_last_;
  Communicator& comm_;
};

// state.yaml <-> JSON object. Written as JSON text (valid YAML, readable by humans and YAML tools),
// durably (core/fs.h); files in the older block-YAML form are still read. Throws naming the file.
void write_state_yaml(const std::string& path, const nlohmann::json& state);
nlohmann::json read_state_yaml(const std::string& path);

// libtorch's default CPU generator state (dropout, init) as bytes, for exact resume.
torch::Tensor get_rng_state();
void set_rng_state(const torch::Tensor& state);
// The default generator of a CUDA device (dropout and initialisation on the GPU) as bytes (a CPU
// uint8 tensor: seed and Philox offset). REQUIRES: dev.is_cuda() (a CUDA build on a GPU machine).
torch::Tensor get_device_rng_state(const torch::Device& dev);
void set_device_rng_state(const torch::Device& dev, const torch::Tensor& state);

}  // namespace rlhf
