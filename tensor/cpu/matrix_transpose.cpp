#include "matrix_transpose.h"

#include "cpu_gemm_pack.h"

namespace mg::cpu {
namespace {

#if defined(__x86_64__) || defined(__i386__)
// The float transpose 8x8 floats at a time in registers (the scalar loop moves about one element
// per cycle, which made Winograd's transposes a quarter of the convolution); the edges one by one.
// The inner loop runs along the shorter side, so its 8 rows of src, or of dst, are a few lines
// each and are read or written whole before they leave L1: [64, 784] moved at 24 GB/s with the
// columns outer against 18 with the rows outer, [784, 64] at 22 against 19 the other way round.
__attribute__((target("avx2"))) inline void transpose_block_8x8(const float* src, int64_t lds, int64_t r0, int64_t c0,
                                                                float* dst, int64_t ldd) {
  __m256 r[8];
  for (int64_t q = 0; q < 8; ++q) r[q] = _mm256_loadu_ps(src + (r0 + q) * lds + c0);
  transpose8x8(r);
  for (int64_t q = 0; q < 8; ++q) _mm256_storeu_ps(dst + (c0 + q) * ldd + r0, r[q]);
}

__attribute__((target("avx2"))) void transpose_f32_avx2(const float* src, int64_t lds, int64_t rows, int64_t cols,
                                                        float* dst, int64_t ldd) {
  const int64_t rows8 = rows / 8 * 8, cols8 = cols / 8 * 8;
  if (rows >= cols) {
    for (int64_t r0 = 0; r0 < rows8; r0 += 8)
      for (int64_t c0 = 0; c0 < cols8; c0 += 8) transpose_block_8x8(src, lds, r0, c0, dst, ldd);
  } else {
    for (int64_t c0 = 0; c0 < cols8; c0 += 8)
      for (int64_t r0 = 0; r0 < rows8; r0 += 8) transpose_block_8x8(src, lds, r0, c0, dst, ldd);
  }
  for (int64_t r = 0; r < rows8; ++r)
    for (int64_t c = cols8; c < cols; ++c) dst[c * ldd + r] = src[r * lds + c];
  for (int64_t r = rows8; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * ldd + r] = src[r * lds + c];
}
#endif

}  // namespace

void transpose_matrix_f32(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd) {
#if defined(__x86_64__) || defined(__i386__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return transpose_f32_avx2(src, lds, rows, cols, dst, ldd);
#endif
  transpose_blocks(src, lds, rows, cols, dst, ldd);
}

}  // namespace mg::cpu
