#include "memory_stats.h"

#include "cpu/cpu_allocator.h"
#include "error.h"

namespace mg {
namespace {

void check_cpu(const char* api, Device device) {
  MG_CHECK(device.is_cpu(), api, ": no allocator statistics for device ", device,
           "; only the CPU allocator keeps them");
}

}  // namespace

MemoryStats memory_stats(Device device) {
  check_cpu("memory_stats", device);
  const cpu::AllocatorStats s = cpu::allocator_stats();
  return MemoryStats{static_cast<int64_t>(s.allocated_bytes), static_cast<int64_t>(s.allocated_bytes + s.cached_bytes),
                     static_cast<int64_t>(s.peak_allocated_bytes)};
}

void reset_peak_memory_stats(Device device) {
  check_cpu("reset_peak_memory_stats", device);
  cpu::reset_peak_allocated();
}

void empty_cache(Device device) {
  check_cpu("empty_cache", device);
  cpu::release_cached_memory();
}

}  // namespace mg
