#pragma once
// Recycled memory for the small bookkeeping objects every op creates: tensor headers, storages,
// autograd metadata, tape nodes. A backward pass frees thousands of them at once, a burst that
// sends glibc's malloc into its slow paths (its per-thread cache holds 7 blocks per size); here
// each thread keeps its own free list per 32-byte size class, so both directions are a few
// instructions. Blocks are plain malloc blocks, so a block freed on another thread simply joins
// that thread's list, and whatever a list holds beyond its cap goes back to malloc.
//
//   auto impl = std::allocate_shared<TensorImpl>(PoolAllocator<TensorImpl>());
#include <cstddef>
#include <cstdint>

namespace mg {

namespace pool {
// nbytes <= kMaxPooledBytes come from the pool, larger ones from malloc.
inline constexpr std::size_t kMaxPooledBytes = 512;
void* allocate(std::size_t nbytes);
void deallocate(void* block, std::size_t nbytes) noexcept;
// False in AddressSanitizer builds, where every block goes back to malloc so that a use after
// free is still caught.
bool recycles_blocks();
}  // namespace pool

template <typename T>
struct PoolAllocator {
  using value_type = T;
  PoolAllocator() noexcept = default;
  template <typename U>
  PoolAllocator(const PoolAllocator<U>&) noexcept {}  // NOLINT: rebinding must be implicit
  T* allocate(std::size_t n) { return static_cast<T*>(pool::allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { pool::deallocate(p, n * sizeof(T)); }
  template <typename U>
  bool operator==(const PoolAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace mg
