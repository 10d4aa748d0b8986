#pragma once
// Non-temporal ("streaming") stores for outputs too large to stay in cache. An ordinary store to
// a line that is not cached first reads the line (read for ownership), so an op writing a large
// output moves its bytes twice; a streaming store writes the line whole, without that read.
// On this project's AVX-512 machine, one thread adding 1 to 16M floats (64 MiB in, 64 MiB out)
// moved 16 GB/s with ordinary stores and 27.5 GB/s with streaming ones, while at 4M floats both
// ran at 28-29 GB/s (the arrays stay in cache). Below the threshold the output is left in cache
// for the op that reads it next, which is where small and medium tensors are used.
#include <cstdint>

namespace mg::cpu {

// Outputs of at least this many bytes are written with streaming stores. Ordinary stores held
// the cached rate through 32 MiB arrays on the machine above and lost 15% at 48 MiB.
inline constexpr int64_t kStreamingStoreBytes = int64_t{32} << 20;

// Bytes a kernel writes to an L1-resident block before stream_copy moves them out (1 KiB ran
// add and exp over 64 MiB 5-15% faster than 4 KiB).
inline constexpr int64_t kStreamingBlockBytes = 1024;

// Copies bytes from src to dst (no overlap) with streaming stores where dst allows (a few
// ordinary stores up to its first 16-byte boundary and after its last). Call
// streaming_store_fence() before other threads read dst.
void stream_copy(void* dst, const void* src, int64_t bytes);

// Orders this thread's streaming stores before its later stores (x86 sfence).
void streaming_store_fence();

}  // namespace mg::cpu
