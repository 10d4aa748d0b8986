#pragma once
// Host memory for CPU tensors: 64-byte aligned blocks (huge-page aligned from 2 MiB) from a
// size-bucketed cache, so that the thousands of small, short-lived tensors of a meta-learning
// inner loop do not hit malloc.
#include <cstddef>
#include <cstdint>

namespace mg::cpu {

inline constexpr std::size_t kAlignment = 64;

// Never returns null (a zero-byte request still gets a valid block); throws mg::Error when
// memory is exhausted even after the cache was released.
void* allocate(std::size_t nbytes);
// nbytes must be the size passed to allocate.
void deallocate(void* data, std::size_t nbytes);

// Blocks of this size or more start on a huge-page boundary, and on Linux the kernel is asked
// to back them with transparent huge pages: a W-omni step's 15 MiB activations in 4 KiB pages
// cost a TLB miss every few rows, each a nested page walk under a hypervisor.
inline constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

// Memory straight from the system, for buffers a kernel keeps for itself (GEMM packing): 64-byte
// aligned, huge-page aligned and advised from kHugePageBytes up, not cached and not counted in
// allocator_stats. Null when the system has no memory left; free with free_uncached.
void* allocate_uncached(std::size_t nbytes);
void free_uncached(void* block);

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
