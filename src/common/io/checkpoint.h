// checkpoint.h — training checkpoints: run.dir/checkpoints/step_NNNNNNNN/{model.h5, optim.h5, state.yaml}
// (PPO adds critic.h5). Written by rank 0 into a hidden temporary directory, fsync'd, renamed into
// place, and only then is `checkpoints/latest` (a one-line text file naming the directory) replaced
// atomically; so a crash mid-save never leaves a checkpoint that resume would pick. Only after the
// new one is in place and re-read (validate) are older steps beyond keep_last deleted; steps newer
// than the one saved (left by a run resumed at an older checkpoint) are never deleted.
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
  // The checkpoint to resume from: the one `latest` names (a step_N directory of this run), else
  // the newest step_N; "" when there is none. Never guesses: when that one is unreadable it
  // throws an rlhf::Error with the reason and the readable older checkpoints to pass to
  // --resume-from (no silent fallback). Collective; rank 0 reads, every rank throws alike.
  std::string find_latest() const;
  // Throws a clear error unless dir holds a complete, readable checkpoint.
  static void validate(const std::string& dir);

 private:
  std::string newest_checkpoint() const;  // rank 0's part of find_latest
  std::string run_dir_, root_;
  int64_t keep_last_;
  Communicator& comm_;
};

// state.yaml <-> JSON object. Written as JSON text (valid YAML, readable by humans and YAML tools),
// durably (core/fs.h); files in the older block-YAML form are still read. Throws naming the file.
void write_state_yaml(const std::string& path, const nlohmann::json& state);
nlohmann::json read_state_yaml(const std::string& path);  // validated (validate_state)
// Types and ranges of the fields every stage reads (step >= 0, world_size >= 1, cursor
// {epoch, position} >= 0, kl_coef finite >= 0, config a string); throws naming file and key.
void validate_state(const nlohmann::json& state, const std::string& path);

// libtorch's default CPU generator state (dropout, init) as bytes, for exact resume.
torch::Tensor get_rng_state();
void set_rng_state(const torch::Tensor& state);
// The default generator of a CUDA device (dropout and initialisation on the GPU) as bytes (a CPU
// uint8 tensor: seed and Philox offset). REQUIRES: dev.is_cuda() (a CUDA build on a GPU machine).
torch::Tensor get_device_rng_state(const torch::Device& dev);
void set_device_rng_state(const torch::Device& dev, const torch::Tensor& state);

}  // namespace rlhf
