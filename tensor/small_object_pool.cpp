#include "small_object_pool.h"

#include <cstdlib>
#include <new>

namespace mg::pool {
namespace {

constexpr std::size_t kGranule = 32;
constexpr std::size_t kClasses = kMaxPooledBytes / kGranule;
// Enough for the tape of a few thousand ops per size class; beyond it blocks go back to malloc.
constexpr std::size_t kMaxBlocksPerClass = 16384;

struct FreeBlock {
  FreeBlock* next;
};

struct ThreadCache {
  FreeBlock* head[kClasses] = {};
  std::size_t count[kClasses] = {};

  ~ThreadCache() {
    for (std::size_t c = 0; c < kClasses; ++c) {
      while (head[c] != nullptr) {
        FreeBlock* block = head[c];
        head[c] = block->next;
        std::free(block);
      }
    }
  }
};

// The hot path reads one trivially destructible thread_local pointer (no TLS wrapper call); the
// cache behind it is created on first use and torn down by a guard at thread exit, after which
// the pointer is null again and blocks go straight to malloc and free.
thread_local ThreadCache* current_cache = nullptr;
thread_local bool cache_torn_down = false;

struct CacheOwner {
  ThreadCache* cache = nullptr;
  ~CacheOwner() {
    current_cache = nullptr;
    cache_torn_down = true;
    delete cache;
  }
};

ThreadCache* create_thread_cache() {
  if (cache_torn_down) return nullptr;
  thread_local CacheOwner owner;
  owner.cache = new ThreadCache();
  current_cache = owner.cache;
  return current_cache;
}

inline ThreadCache* thread_cache() {
  ThreadCache* cache = current_cache;
  return cache != nullptr ? cache : create_thread_cache();
}

std::size_t size_class(std::size_t nbytes) { return (nbytes + kGranule - 1) / kGranule - 1; }

// Under AddressSanitizer every block goes back to malloc, so a use after free is still caught.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kPooling = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kPooling = false;
#else
constexpr bool kPooling = true;
#endif
#else
constexpr bool kPooling = true;
#endif

}  // namespace

void* allocate(std::size_t nbytes) {
  if (nbytes == 0) nbytes = 1;
  if (kPooling && nbytes <= kMaxPooledBytes) {
    const std::size_t c = size_class(nbytes);
    if (ThreadCache* cache = thread_cache(); cache != nullptr && cache->head[c] != nullptr) {
      FreeBlock* block = cache->head[c];
      cache->head[c] = block->next;
      --cache->count[c];
      return block;
    }
    nbytes = (c + 1) * kGranule;  // any block of a class can serve any request of that class
  }
  void* block = std::malloc(nbytes);
  if (block == nullptr) throw std::bad_alloc();
  return block;
}

bool recycles_blocks() { return kPooling; }

void deallocate(void* block, std::size_t nbytes) noexcept {
  if (block == nullptr) return;
  if (nbytes == 0) nbytes = 1;
  if (kPooling && nbytes <= kMaxPooledBytes) {
    const std::size_t c = size_class(nbytes);
    ThreadCache* cache = thread_cache();
    if (cache != nullptr && cache->count[c] < kMaxBlocksPerClass) {
      auto* free_block = static_cast<FreeBlock*>(block);
      free_block->next = cache->head[c];
      cache->head[c] = free_block;
      ++cache->count[c];
      return;
    }
  }
  std::free(block);
}

}  // namespace mg::pool
