// stream_copy: SSE2 streaming stores (every x86-64 CPU) or AVX-512 ones where the CPU has them,
// chosen once. Elsewhere a plain memcpy.
#include "streaming_store.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace mg::cpu {
namespace {

#if defined(__x86_64__)
// dst is 16-byte aligned; bytes a multiple of 16.
void stream_aligned_sse2(char* dst, const char* src, int64_t bytes) {
  for (int64_t i = 0; i < bytes; i += 16)
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
}

// dst is 64-byte aligned; bytes a multiple of 64.
__attribute__((target("avx512f"))) void stream_aligned_avx512(char* dst, const char* src, int64_t bytes) {
  for (int64_t i = 0; i < bytes; i += 64)
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i), _mm512_loadu_si512(src + i));
}

bool has_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}
#endif

}  // namespace

void stream_copy(void* dst, const void* src, int64_t bytes) {
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
#if defined(__x86_64__)
  const int64_t align = has_avx512() ? 64 : 16;
  const int64_t head =
      std::min<int64_t>(bytes, (align - static_cast<int64_t>(reinterpret_cast<uintptr_t>(d) % align)) % align);
  std::memcpy(d, s, static_cast<size_t>(head));
  const int64_t body = (bytes - head) / align * align;
  if (align == 64) {
    stream_aligned_avx512(d + head, s + head, body);
  } else {
    stream_aligned_sse2(d + head, s + head, body);
  }
  std::memcpy(d + head + body, s + head + body, static_cast<size_t>(bytes - head - body));
#else
  std::memcpy(d, s, static_cast<size_t>(bytes));
#endif
}

void streaming_store_fence() {
#if defined(__x86_64__)
  _mm_sfence();
#endif
}

}  // namespace mg::cpu
