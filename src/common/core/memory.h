// memory.h — measured peak memory of this process, for summary.json and the benchmarks.
//   CUDA device: the caching allocator's peak of allocated bytes (the counter behind PyTorch's
//                torch.cuda.max_memory_allocated), since the process started or the last reset;
//   CPU:         the process's peak resident set size (getrusage ru_maxrss), which includes the
//                program, libraries and everything else the process touched.
#pragma once
#include <cstdint>
#include <string>

#include <torch/torch.h>

namespace rlhf {

struct PeakMemory {
  int64_t bytes = -1;  // -1: not measurable (a CUDA device in a build without CUDA support)
  std::string kind;    // "cuda_allocator_peak" | "cpu_max_rss"
};
PeakMemory peak_memory(const torch::Device& dev);
void reset_peak_memory(const torch::Device& dev);  // CUDA only (the RSS peak cannot be reset)

}  // namespace rlhf
