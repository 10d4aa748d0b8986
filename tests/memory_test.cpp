// The allocator's statistics (tensor/memory_stats.h): what is allocated, what the cache holds,
// and the peak, on the CPU allocator that every tensor's storage goes through.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "../tensor/build_info.h"
#include "../tensor/cpu/cpu_allocator.h"
#include "../tensor/creation.h"
#include "../tensor/memory_stats.h"
#include "check_error.h"

using namespace mg;

namespace {

// The VmFlags of the mapping that holds address (/proc/self/smaps), or nothing where the system
// does not say.
std::optional<std::string> mapping_flags(const void* address) {
  std::ifstream smaps("/proc/self/smaps");
  const auto at = reinterpret_cast<uintptr_t>(address);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t start = 0, end = 0;
    char dash = 0;
    std::istringstream range(line);
    if (range >> std::hex >> start >> dash >> end && dash == '-') {
      inside = start <= at && at < end;
      continue;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) return line.substr(8) + " ";
  }
  return std::nullopt;
}

bool transparent_huge_pages_configured() { return std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled").good(); }

}  // namespace

TEST_SUITE("tensor.memory") {
  TEST_CASE("allocated follows live storages, in the allocator's block sizes") {
    const MemoryStats before = memory_stats();
    CHECK(before.reserved >= before.allocated);
    {
      Tensor t = empty({1000});  // 4000 bytes: a 4096-byte block
      CHECK(memory_stats().allocated == before.allocated + 4096);
      Tensor big = empty({3 << 18}, kFloat64);  // 6 MiB: large blocks are whole MiB
      CHECK(memory_stats().allocated == before.allocated + 4096 + (6 << 20));
      Tensor view = big.narrow(0, 0, 10);  // a view holds no memory of its own
      CHECK(memory_stats().allocated == before.allocated + 4096 + (6 << 20));
    }
    CHECK(memory_stats().allocated == before.allocated);
  }

  TEST_CASE("reserved is allocated plus the cache; empty_cache gives the cache back") {
    empty_cache();
    const MemoryStats clean = memory_stats();
    CHECK(clean.reserved == clean.allocated);
    { Tensor t = empty({1000}); }
    const MemoryStats cached = memory_stats();
    CHECK(cached.allocated == clean.allocated);
    // The freed block stays, for reuse (unless MG_CPU_CACHE=0 turned the cache off).
    const char* env = std::getenv("MG_CPU_CACHE");
    const bool caching = !(env != nullptr && std::string_view(env) == "0");
    CHECK(cached.reserved == clean.reserved + (caching ? 4096 : 0));
    empty_cache();
    CHECK(memory_stats().reserved == memory_stats().allocated);
  }

  TEST_CASE("a large request reuses a cached block up to twice its size, which returns at its own size") {
    const char* env = std::getenv("MG_CPU_CACHE");
    if (env != nullptr && std::string_view(env) == "0") return;  // no cache to reuse from
    empty_cache();
    const MemoryStats clean = memory_stats();
    { Tensor big = empty({5 << 18}); }  // a 5 MiB block, now cached
    CHECK(memory_stats().reserved == clean.reserved + (5 << 20));
    {
      Tensor smaller = empty({3 << 18});  // 3 MiB: takes the 5 MiB block instead of new memory
      CHECK(memory_stats().reserved == clean.reserved + (5 << 20));
      CHECK(memory_stats().allocated == clean.allocated + (5 << 20));
      Tensor tiny = empty({1 << 18});  // 1 MiB, a small bucket: never served from a large block
      CHECK(memory_stats().reserved == clean.reserved + (6 << 20));
    }
    CHECK(memory_stats().allocated == clean.allocated);
    CHECK(memory_stats().reserved == clean.reserved + (6 << 20));
    {
      Tensor again = empty({5 << 18});  // the 5 MiB block went back as 5 MiB: an exact hit
      CHECK(memory_stats().reserved == clean.reserved + (6 << 20));
    }
    empty_cache();
    CHECK(memory_stats().reserved == memory_stats().allocated);
  }

  TEST_CASE("a large request that no cached block serves first frees the cached large blocks smaller than it") {
    const char* env = std::getenv("MG_CPU_CACHE");
    if (env != nullptr && std::string_view(env) == "0") return;  // nothing cached to free
    empty_cache();
    const MemoryStats clean = memory_stats();
    {
      Tensor a = empty({3 << 18});     // 3 MiB
      Tensor b = empty({2 << 18});     // 2 MiB
      Tensor keep = empty({1 << 16});  // 256 KiB, a small bucket: stays cached
    }
    CHECK(memory_stats().reserved == clean.reserved + (5 << 20) + (1 << 18));
    {
      // 8 MiB: more than twice either block, so neither serves it; both go back to the system
      // (where malloc may merge them into this block), the small one stays.
      Tensor big = empty({8 << 18});
      CHECK(memory_stats().reserved == clean.reserved + (8 << 20) + (1 << 18));
    }
    {
      // 3 MiB: the cached 8 MiB block is more than twice that, and larger blocks stay cached.
      Tensor again = empty({3 << 18});
      CHECK(memory_stats().allocated == clean.allocated + (3 << 20));
      CHECK(memory_stats().reserved == clean.reserved + (11 << 20) + (1 << 18));
    }
    empty_cache();
    CHECK(memory_stats().reserved == memory_stats().allocated);
  }

  TEST_CASE("peak_allocated is the high-water mark since the last reset") {
    reset_peak_memory_stats();
    const int64_t base = memory_stats().allocated;
    CHECK(memory_stats().peak_allocated == base);
    {
      Tensor a = empty({1 << 20});  // 4 MiB
      Tensor b = empty({1 << 19});  // 2 MiB
    }
    { Tensor c = empty({1 << 18}); }  // 1 MiB, below the earlier high
    CHECK(memory_stats().allocated == base);
    CHECK(memory_stats().peak_allocated == base + (6 << 20));
    reset_peak_memory_stats();
    CHECK(memory_stats().peak_allocated == base);
  }

  TEST_CASE("concurrent allocation keeps the counts exact") {
    const int64_t base = memory_stats().allocated;
    reset_peak_memory_stats();
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([] {
        for (int i = 0; i < 2000; ++i) {
          Tensor a = empty({64 + i % 7});
          Tensor b = empty({300});
        }
      });
    for (std::thread& t : threads) t.join();
    const MemoryStats after = memory_stats();
    CHECK(after.allocated == base);
    CHECK(after.peak_allocated > base);
    CHECK(after.peak_allocated <= base + 4 * (512 + 2048));  // at most two blocks per thread at a time
  }

  TEST_CASE("blocks of a huge page or more start on a huge-page boundary, advised for huge pages") {
    const auto offset = [](const void* p, std::size_t alignment) { return reinterpret_cast<uintptr_t>(p) % alignment; };
    CHECK(cpu::kHugePageBytes == std::size_t{2} << 20);
    const Tensor small = empty({1000});
    CHECK(offset(small.data_ptr<float>(), cpu::kAlignment) == 0);
    // A fresh block, whether or not the cache holds one: the cache only ever holds blocks from
    // the same function.
    empty_cache();
    for (const int64_t floats : {int64_t{1} << 19, int64_t{3} << 19, int64_t{15} << 18}) {
      const Tensor big = empty({floats});
      CHECK(offset(big.data_ptr<float>(), cpu::kHugePageBytes) == 0);
    }
    void* scratch = cpu::allocate_uncached(5 << 20);
    REQUIRE(scratch != nullptr);
    CHECK(offset(scratch, cpu::kHugePageBytes) == 0);
    void* below = cpu::allocate_uncached((2 << 20) - 64);
    REQUIRE(below != nullptr);
    CHECK(offset(below, cpu::kAlignment) == 0);
    // Linux marks an advised mapping "hg" whether or not huge pages back it yet.
    const std::optional<std::string> flags = mapping_flags(scratch);
    if (transparent_huge_pages_configured() && flags.has_value()) {
      CHECK(flags->find(" hg ") != std::string::npos);
      const Tensor big = empty({int64_t{3} << 19});
      CHECK(mapping_flags(big.data_ptr<float>()).value_or("").find(" hg ") != std::string::npos);
    } else {
      MESSAGE("no transparent huge pages here: the advice is not checked");
    }
    cpu::free_uncached(scratch);
    cpu::free_uncached(below);
  }

  TEST_CASE("devices without statistics are an error") {
    if (build_info().cuda_devices > 0) return;  // cuda_test checks the CUDA allocator's statistics
    // Without CUDA there is no allocator to ask; with CUDA but no device, no device to ask about.
    const char* why = build_info().cuda_compiled ? "no CUDA device" : "only the CPU allocator";
    CHECK_MG_ERROR(memory_stats(Device("cuda:0")), "memory_stats", "cuda:0", why);
    CHECK_MG_ERROR(reset_peak_memory_stats(Device("cuda")), "reset_peak_memory_stats");
    CHECK_MG_ERROR(empty_cache(Device("cuda")), "empty_cache");
  }
}
