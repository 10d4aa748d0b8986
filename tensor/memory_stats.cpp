#include "memory_stats.h"

#include "cpu/cpu_allocator.h"
#include "error.h"

#if MG_HAVE_CUDA
#include "../cuda/cuda_allocator.h"
#endif

namespace mg {
namespace {

#if MG_HAVE_CUDA
constexpr bool kCudaStats = true;  // the CUDA caching allocator checks the device index itself
#else
constexpr bool kCudaStats = false;
#endif

void check_supported(const char* api, Device device) {
  MG_CHECK(device.is_cpu() || (kCudaStats && device.is_cuda()), api, ": no allocator statistics for device ", device,
           "; only the CPU allocator keeps them in a build without CUDA");
}

}  // namespace

MemoryStats memory_stats(Device device) {
  check_supported("memory_stats", device);
#if MG_HAVE_CUDA
  if (device.is_cuda()) {
    const cuda::AllocatorStats s = cuda::allocator_stats(device.index);
    return MemoryStats{s.allocated_bytes, s.reserved_bytes, s.peak_allocated_bytes};
  }
#endif
  const cpu::AllocatorStats s = cpu::allocator_stats();
  return MemoryStats{static_cast<int64_t>(s.allocated_bytes), static_cast<int64_t>(s.allocated_bytes + s.cached_bytes),
                     static_cast<int64_t>(s.peak_allocated_bytes)};
}

void reset_peak_memory_stats(Device device) {
  check_supported("reset_peak_memory_stats", device);
#if MG_HAVE_CUDA
  if (device.is_cuda()) return cuda::reset_peak_allocated(device.index);
#endif
  cpu::reset_peak_allocated();
}

void empty_cache(Device device) {
  check_supported("empty_cache", device);
#if MG_HAVE_CUDA
  if (device.is_cuda()) return cuda::empty_cache(device.index);
#endif
  cpu::release_cached_memory();
}

}  // namespace mg
