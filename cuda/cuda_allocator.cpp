#include "cuda_allocator.h"

#include <algorithm>
#include <array>
#include <map>
#include <mutex>
#include <set>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cuda_check.h"
#include "cuda_context.h"

namespace mg::cuda {
namespace {

constexpr std::size_t kSmallLimit = std::size_t{1} << 20;
constexpr std::size_t kSmallGranule = 512;
constexpr std::size_t kLargeGranule = std::size_t{2} << 20;
constexpr int kMaxDevices = 64;

constexpr int kSharedPool = 0;

struct Block {
  std::size_t size;
  CUstream_st* stream;
  int pool;  // kSharedPool, or the graph pool that owns it
};

// Free lists are keyed by (pool, stream, size).
using FreeKey = std::tuple<int, CUstream_st*, std::size_t>;

// One cache per device, behind one mutex: an allocation is a map lookup, far below the cost of
// the kernel launch it feeds.
struct DeviceCache {
  std::mutex mutex;
  std::unordered_map<void*, Block> live;
  // Free blocks by (stream, size); a stream's blocks are never handed to another stream, whose
  // work is not ordered after the frees.
  std::map<FreeKey, std::vector<void*>> free;
  AllocatorStats stats;
  int capturing_pool = kSharedPool;  // where allocations go now
  int next_pool = 1;
  std::set<int> live_pools;
};

std::array<DeviceCache, kMaxDevices>& caches() {
  static auto* all = new std::array<DeviceCache, kMaxDevices>();  // outlives static storages
  return *all;
}

DeviceCache& cache_for(const char* op, int device) {
  check_device(op, Device(DeviceType::CUDA, device));
  return caches()[static_cast<std::size_t>(device)];
}

std::size_t round_up(std::size_t n, std::size_t granule) { return (n + granule - 1) / granule * granule; }

// Frees every cached block of the device; the caller holds c.mutex. cudaFree waits for the
// device, so work still reading a block (issued before it was freed) has finished.
// Frees every cached block of the shared pool (a graph's blocks stay while it lives); the caller
// holds c.mutex. cudaFree waits for the device, so work still reading a block (issued before it
// was freed) has finished.
void release_free_blocks(DeviceCache& c, int device) {
  if (c.free.empty()) return;
  DeviceGuard guard(device);
  for (auto it = c.free.begin(); it != c.free.end();) {
    if (std::get<0>(it->first) != kSharedPool) {
      ++it;
      continue;
    }
    for (void* p : it->second) {
      MG_CUDA_CHECK("cuda allocator", cudaFree(p));
      ++c.stats.device_free_calls;
      c.stats.reserved_bytes -= static_cast<int64_t>(std::get<2>(it->first));
    }
    it = c.free.erase(it);
  }
}

// A free block of the pool for (stream, size) if there is one; removes it from the free lists.
void* take_free_block(DeviceCache& c, int pool, CUstream_st* stream, std::size_t& size) {
  auto it = c.free.lower_bound({pool, stream, size});
  if (it == c.free.end() || std::get<0>(it->first) != pool || std::get<1>(it->first) != stream) return nullptr;
  const std::size_t found = std::get<2>(it->first);
  // Small classes match exactly; a large request may take a block up to twice its class.
  if (found != size && (size <= kSmallLimit || found > 2 * size)) return nullptr;
  void* p = it->second.back();
  it->second.pop_back();
  if (it->second.empty()) c.free.erase(it);
  size = found;
  return p;
}

}  // namespace

std::size_t allocation_size(std::size_t nbytes) {
  if (nbytes <= kSmallLimit) return std::max(kSmallGranule, round_up(nbytes, kSmallGranule));
  return round_up(nbytes, kLargeGranule);
}

void* allocate(int device, std::size_t nbytes, CUstream_st* stream) {
  DeviceCache& c = cache_for("cuda allocator", device);
  std::size_t size = allocation_size(nbytes);
  std::lock_guard<std::mutex> lock(c.mutex);
  void* p = take_free_block(c, c.capturing_pool, stream, size);
  if (p != nullptr) {
    ++c.stats.cache_hits;
  } else {
    ++c.stats.cache_misses;
    DeviceGuard guard(device);
    cudaError_t err = cudaMalloc(&p, size);
    ++c.stats.device_malloc_calls;
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      release_free_blocks(c, device);
      err = cudaMalloc(&p, size);
      ++c.stats.device_malloc_calls;
    }
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      MG_FAIL("cuda allocator: cannot allocate ", nbytes, " bytes on cuda:", device, " (", c.stats.allocated_bytes,
              " bytes allocated, ", c.stats.reserved_bytes, " reserved): ", cudaGetErrorString(err));
    }
    c.stats.reserved_bytes += static_cast<int64_t>(size);
  }
  c.live.emplace(p, Block{size, stream, c.capturing_pool});
  c.stats.allocated_bytes += static_cast<int64_t>(size);
  c.stats.peak_allocated_bytes = std::max(c.stats.peak_allocated_bytes, c.stats.allocated_bytes);
  return p;
}

void deallocate(int device, void* ptr) {
  if (ptr == nullptr) return;
  DeviceCache& c = caches()[static_cast<std::size_t>(device)];
  std::lock_guard<std::mutex> lock(c.mutex);
  auto it = c.live.find(ptr);
  if (it == c.live.end()) return;  // not ours: nothing sensible to do in a destructor
  const Block b = it->second;
  c.live.erase(it);
  c.stats.allocated_bytes -= static_cast<int64_t>(b.size);
  // Freed during a capture: the graph may read or write it on replay, whatever pool it came from.
  int pool = c.capturing_pool != kSharedPool ? c.capturing_pool : b.pool;
  if (pool != kSharedPool && !c.live_pools.contains(pool)) pool = kSharedPool;
  c.free[{pool, b.stream, b.size}].push_back(ptr);
}

AllocatorStats allocator_stats(int device) {
  DeviceCache& c = cache_for("memory_stats", device);
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.stats;
}

void reset_peak_allocated(int device) {
  DeviceCache& c = cache_for("reset_peak_memory_stats", device);
  std::lock_guard<std::mutex> lock(c.mutex);
  c.stats.peak_allocated_bytes = c.stats.allocated_bytes;
}

void empty_cache(int device) {
  DeviceCache& c = cache_for("empty_cache", device);
  std::lock_guard<std::mutex> lock(c.mutex);
  release_free_blocks(c, device);
}

int begin_graph_pool(int device) {
  DeviceCache& c = cache_for("capture_graph", device);
  std::lock_guard<std::mutex> lock(c.mutex);
  MG_CHECK(c.capturing_pool == kSharedPool, "capture_graph: cuda:", device, " is already capturing a graph");
  const int pool = c.next_pool++;
  c.live_pools.insert(pool);
  c.capturing_pool = pool;
  return pool;
}

void end_graph_pool(int device) {
  DeviceCache& c = cache_for("capture_graph", device);
  std::lock_guard<std::mutex> lock(c.mutex);
  c.capturing_pool = kSharedPool;
}

void release_graph_pool(int device, int pool) {
  DeviceCache& c = caches()[static_cast<std::size_t>(device)];
  std::lock_guard<std::mutex> lock(c.mutex);
  c.live_pools.erase(pool);
  for (auto it = c.free.begin(); it != c.free.end();) {
    const auto& [owner, stream, size] = it->first;
    if (owner != pool) {
      ++it;
      continue;
    }
    auto& shared = c.free[{kSharedPool, stream, size}];
    shared.insert(shared.end(), it->second.begin(), it->second.end());
    it = c.free.erase(it);
  }
}

}  // namespace mg::cuda
