#pragma once
// Host memory for CPU tensors: 64-byte aligned blocks from a size-bucketed cache, so that the
// thousands of small, short-lived tensors of a meta-learning inner loop do not hit malloc.
#include <cstddef>
#include <cstdint>

namespace mg::cpu {

inline constexpr std::size_t kAlignment = 64;

// Never returns null (a zero-byte request still gets a valid block); throws mg::Error when
// memory is exhausted even after the cache was released.
void* allocate(std::size_t nbytes);
// nbytes must be the size passed to allocate.
void deallocate(void* data, std::size_t nbytes);

struct AllocatorStats {
  std::size_t cached_bytes = 0;          // held in the cache, free for reuse
  std::size_t allocated_bytes = 0;       // handed out and not yet returned (rounded to buckets)
  std::size_t peak_allocated_bytes = 0;  // the most allocated_bytes reached since the last reset
  uint64_t cache_hits = 0;
  uint64_t cache_misses = 0;
};
AllocatorStats allocator_stats();
// Restarts the peak from the bytes allocated now.
void reset_peak_allocated();
// Frees every cached block back to the system.
void release_cached_memory();

}  // namespace mg::cpu
