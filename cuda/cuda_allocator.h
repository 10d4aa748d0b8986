#pragma once
// The caching allocator behind every CUDA tensor. A freed block goes back to a free list of its
// device and stream and serves the next request of its size class on that stream, so the
// thousands of small tensors of a meta-learning inner loop reach cudaMalloc only while the cache
// warms up. Size classes: requests up to 1 MiB round up to a multiple of 512 bytes; larger ones
// to a multiple of 2 MiB, and may reuse a free block up to twice their class.
//
// This header is free of CUDA's own headers, so tests and benchmarks can read the statistics:
//   auto before = mg::cuda::allocator_stats(0);
//   ... run ...
//   CHECK(mg::cuda::allocator_stats(0).device_malloc_calls == before.device_malloc_calls);
// (mg::memory_stats(Device("cuda:0")) gives the allocated / reserved / peak part of it too.)
#include <cstddef>
#include <cstdint>

struct CUstream_st;  // cudaStream_t is CUstream_st*

namespace mg::cuda {

struct AllocatorStats {
  int64_t allocated_bytes = 0;       // in blocks that live storages hold (rounded to size classes)
  int64_t reserved_bytes = 0;        // allocated plus the free blocks the cache keeps
  int64_t peak_allocated_bytes = 0;  // the most allocated_bytes since the last reset_peak_allocated
  int64_t device_malloc_calls = 0;   // cudaMalloc calls, ever (cache misses that reached the driver)
  int64_t device_free_calls = 0;     // cudaFree calls, ever (empty_cache, or retries after out of memory)
  int64_t cache_hits = 0;            // requests served from a free block
  int64_t cache_misses = 0;          // requests that needed a new block
};

// All three throw mg::Error unless device is a visible CUDA device index.
AllocatorStats allocator_stats(int device);
void reset_peak_allocated(int device);
// Hands every free block of the device back to the driver (reserved drops to allocated).
void empty_cache(int device);

// The block size a request of nbytes gets.
std::size_t allocation_size(std::size_t nbytes);

// A block of at least nbytes (never null, also for 0 bytes) for work ordered on stream; throws
// mg::Error when the device is out of memory even after the cache was emptied.
void* allocate(int device, std::size_t nbytes, CUstream_st* stream);
// ptr must come from allocate on this device. It is reused by the next request on its stream
// without waiting: work already issued on that stream runs before anything issued later.
void deallocate(int device, void* ptr);

// Graph pools. While a graph is captured on a device, every allocation on it is served from a
// pool of that graph, and every block freed meanwhile joins the pool: a replay writes the very
// blocks the capture used, so nothing else may be handed them while the graph exists. Blocks of
// the pool freed later return to the pool too; release_graph_pool gives them all back to the
// shared cache once the graph is destroyed. empty_cache never frees a live pool's blocks.
int begin_graph_pool(int device);  // a new pool; allocations on device come from it until end
void end_graph_pool(int device);
void release_graph_pool(int device, int pool);

}  // namespace mg::cuda
