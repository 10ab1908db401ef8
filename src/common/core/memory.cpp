// memory.cpp — see memory.h.
#include "common/core/memory.h"

#include <sys/resource.h>

#ifdef RLHF_WITH_NCCL
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace rlhf {

PeakMemory peak_memory(const torch::Device& dev) {
  PeakMemory p;
  if (dev.is_cuda()) {
    p.kind = "cuda_allocator_peak";
#ifdef RLHF_WITH_NCCL
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(dev.index() < 0 ? 0 : dev.index());
    p.bytes = stats.allocated_bytes[0].peak;  // index 0 = StatType::AGGREGATE
#endif
    return p;
  }
  p.kind = "cpu_max_rss";
  struct rusage ru {};
  if (getrusage(RUSAGE_SELF, &ru) == 0) p.bytes = static_cast<int64_t>(ru.ru_maxrss) * 1024;  // KiB
  return p;
}

void reset_peak_memory(const torch::Device& dev) {
#ifdef RLHF_WITH_NCCL
  if (dev.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(dev.index() < 0 ? 0 : dev.index());
#else
  (void)dev;
#endif
}

}  // namespace rlhf
