#include "cpu_allocator.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "../error.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace mg::cpu {
namespace {

// Small blocks round up to a power of two (at least 64 bytes); large ones to a multiple of
// 1 MiB, which wastes at most 1 MiB per block instead of up to half of it.
constexpr std::size_t kLargeBlock = std::size_t{1} << 20;
// The cache never holds more than this; blocks freed beyond it go back to the system.
constexpr std::size_t kMaxCachedBytes = std::size_t{1} << 30;

std::size_t bucket_size(std::size_t nbytes) {
  if (nbytes <= kAlignment) return kAlignment;
  if (nbytes > kLargeBlock) {
    const std::size_t units = (nbytes + kLargeBlock - 1) / kLargeBlock;
    return units * kLargeBlock;
  }
  return std::bit_ceil(nbytes);
}

// The advice is a hint: where transparent huge pages are off, or none is free, the block keeps
// ordinary pages and works the same.
void advise_huge_pages([[maybe_unused]] void* block, [[maybe_unused]] std::size_t size) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  madvise(block, size, MADV_HUGEPAGE);
#endif
}

// Held for a few dozen instructions per call: a spinning flag is cheaper than a mutex for that,
// and the cost matters because every tensor of a small op passes through here twice.
class SpinLock {
 public:
  void lock() {
    while (flag_.test_and_set(std::memory_order_acquire)) {
      while (flag_.test(std::memory_order_relaxed)) {
      }
    }
  }
  void unlock() { flag_.clear(std::memory_order_release); }

 private:
  std::atomic_flag flag_;
};

// Free lists: power-of-two buckets up to kLargeBlock by their log2 in an array (the common case,
// no hashing), larger blocks by size in a map.
class FreeLists {
 public:
  std::vector<void*>& operator[](std::size_t size) {
    if (size <= kLargeBlock) return small_[std::bit_width(size) - 1];
    return large_[size];
  }
  std::vector<void*>* find(std::size_t size) {
    if (size <= kLargeBlock) return &small_[std::bit_width(size) - 1];
    auto it = large_.find(size);
    return it == large_.end() ? nullptr : &it->second;
  }
  // The smallest cached large block of size in (size, max_size], taken off its list; its size
  // is written to *found. Null when there is none.
  void* take_larger(std::size_t size, std::size_t max_size, std::size_t* found) {
    for (auto it = large_.upper_bound(size); it != large_.end() && it->first <= max_size; ++it) {
      if (it->second.empty()) continue;
      void* block = it->second.back();
      it->second.pop_back();
      *found = it->first;
      return block;
    }
    return nullptr;
  }
  // Takes every cached large block smaller than size off its list, calling fn(block, its size).
  template <typename Fn>
  void take_smaller(std::size_t size, Fn&& fn) {
    for (auto it = large_.begin(); it != large_.end() && it->first < size; ++it) {
      for (void* block : it->second) fn(block, it->first);
      it->second.clear();
    }
  }
  template <typename Fn>
  void for_each(Fn&& fn) {
    for (auto& list : small_) fn(list);
    for (auto& [size, list] : large_) fn(list);
  }

 private:
  std::vector<void*> small_[64];
  std::map<std::size_t, std::vector<void*>> large_;  // ordered: take_larger looks upwards
};

class CachingAllocator {
 public:
  // MG_CPU_CACHE=0 turns the cache off (every block goes straight back to the system), which
  // lets AddressSanitizer see use-after-free of tensor memory.
  CachingAllocator() {
    const char* env = std::getenv("MG_CPU_CACHE");
    caching_ = !(env != nullptr && std::string_view(env) == "0");
  }

  void* allocate(std::size_t nbytes) {
    MG_CHECK(nbytes <= (std::size_t{1} << 62), "cpu: cannot allocate ", nbytes, " bytes");
    const std::size_t size = bucket_size(nbytes);
    std::vector<void*> to_free;
    {
      std::lock_guard<SpinLock> lock(lock_);
      std::vector<void*>* list = free_.find(size);
      if (list != nullptr && !list->empty()) {
        void* block = list->back();
        list->pop_back();
        cached_bytes_ -= size;
        add_allocated(size);
        ++hits_;
        return block;
      }
      // A large request takes a cached block up to twice its size rather than growing the
      // process: memory already touched is reused (a meta-step's large tensors come in many
      // sizes, and exact-size reuse alone left ~60 MiB of W-omni's cache idle at its peak).
      std::size_t found = 0;
      if (size > kLargeBlock) {
        if (void* block = free_.take_larger(size, 2 * size, &found)) {
          cached_bytes_ -= found;
          oversized_[block] = found;
          add_allocated(found);
          ++hits_;
          return block;
        }
      }
      ++misses_;
      // Cached large blocks smaller than this request can never serve it: back to malloc with
      // them, which can merge neighbours into this block instead of growing the process.
      if (size > kLargeBlock)
        free_.take_smaller(size, [&](void* smaller, std::size_t bytes) {
          cached_bytes_ -= bytes;
          to_free.push_back(smaller);
        });
    }
    for (void* smaller : to_free) free_uncached(smaller);
    void* block = allocate_uncached(size);
    if (block == nullptr) {
      release();
      block = allocate_uncached(size);
    }
    MG_CHECK(block != nullptr, "cpu: out of memory allocating ", nbytes, " bytes");
    std::lock_guard<SpinLock> lock(lock_);
    add_allocated(size);
    return block;
  }

  void deallocate(void* block, std::size_t nbytes) {
    if (block == nullptr) return;
    std::size_t size = bucket_size(nbytes);
    {
      std::lock_guard<SpinLock> lock(lock_);
      if (size > kLargeBlock && !oversized_.empty()) {
        if (auto it = oversized_.find(block); it != oversized_.end()) {
          size = it->second;  // handed out from a larger cached block: it goes back at its own size
          oversized_.erase(it);
        }
      }
      allocated_bytes_ -= size;
      if (caching_ && cached_bytes_ + size <= kMaxCachedBytes) {
        free_[size].push_back(block);
        cached_bytes_ += size;
        return;
      }
    }
    free_uncached(block);
  }

  void release() {
    std::vector<void*> blocks;
    {
      std::lock_guard<SpinLock> lock(lock_);
      free_.for_each([&](std::vector<void*>& list) {
        blocks.insert(blocks.end(), list.begin(), list.end());
        list.clear();
      });
      cached_bytes_ = 0;
    }
    for (void* block : blocks) free_uncached(block);
  }

  AllocatorStats stats() {
    std::lock_guard<SpinLock> lock(lock_);
    return AllocatorStats{cached_bytes_, allocated_bytes_, peak_allocated_bytes_, hits_, misses_};
  }

  void reset_peak() {
    std::lock_guard<SpinLock> lock(lock_);
    peak_allocated_bytes_ = allocated_bytes_;
  }

 private:
  // Callers hold lock_: the peak rides on the lock the free lists already need.
  void add_allocated(std::size_t size) {
    allocated_bytes_ += size;
    if (allocated_bytes_ > peak_allocated_bytes_) peak_allocated_bytes_ = allocated_bytes_;
  }

  bool caching_ = true;
  SpinLock lock_;
  FreeLists free_;
  std::unordered_map<void*, std::size_t> oversized_;  // large blocks bigger than their request's bucket
  std::size_t cached_bytes_ = 0;
  std::size_t allocated_bytes_ = 0;
  std::size_t peak_allocated_bytes_ = 0;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

// Never destroyed: tensors held by other static objects may be freed after main returns.
CachingAllocator& instance() {
  static CachingAllocator* allocator = new CachingAllocator();
  return *allocator;
}

}  // namespace

void* allocate_uncached(std::size_t nbytes) {
  // aligned_alloc takes only a whole number of alignments (AddressSanitizer holds callers to it).
  const auto whole = [nbytes](std::size_t alignment) {
    return std::max<std::size_t>(1, (nbytes + alignment - 1) / alignment) * alignment;
  };
  if (nbytes < kHugePageBytes) return std::aligned_alloc(kAlignment, whole(kAlignment));
  // Only the requested bytes are advised: a huge page past them would fill with memory no one uses.
  void* block = std::aligned_alloc(kHugePageBytes, whole(kHugePageBytes));
  if (block != nullptr) advise_huge_pages(block, nbytes);
  return block;
}

void free_uncached(void* block) { std::free(block); }

void* allocate(std::size_t nbytes) { return instance().allocate(nbytes); }
void deallocate(void* data, std::size_t nbytes) { instance().deallocate(data, nbytes); }
AllocatorStats allocator_stats() { return instance().stats(); }
void reset_peak_allocated() { instance().reset_peak(); }
void release_cached_memory() { instance().release(); }

}  // namespace mg::cpu
