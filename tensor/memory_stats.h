#pragma once
// What the tensor allocator of a device holds, for measuring the memory of a computation:
//
//   mg::empty_cache();              // optional: start from a clean cache
//   mg::reset_peak_memory_stats();
//   ... run it ...
//   int64_t peak = mg::memory_stats().peak_allocated - before.allocated;
//
// Byte counts are those of the allocator's blocks (a request is rounded up to its size class),
// so they are what the tensors really occupy, not the sum of numel * itemsize.
#include <cstdint>

#include "device.h"

namespace mg {

struct MemoryStats {
  int64_t allocated = 0;       // in blocks that live tensors (storages) hold now
  int64_t reserved = 0;        // allocated plus the free blocks the cache keeps for reuse
  int64_t peak_allocated = 0;  // the most allocated reached since the last reset_peak_memory_stats()
};

// The CPU allocator and, in a build with CUDA, the CUDA caching allocator of each visible device
// (cuda/cuda_allocator.h has its full statistics); anything else is an mg::Error. Thread-safe.
MemoryStats memory_stats(Device device = kCPU);
// Restarts peak_allocated from what is allocated now.
void reset_peak_memory_stats(Device device = kCPU);
// Hands the cache's free blocks back to the system (reserved drops to allocated).
void empty_cache(Device device = kCPU);

}  // namespace mg
