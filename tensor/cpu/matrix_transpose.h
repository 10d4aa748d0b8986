#pragma once
// A matrix transposed between two strided layouts: dst[c * ldd + r] = src[r * lds + c] for
// r < rows, c < cols. Winograd's image transposes and the strided copies of transposed views
// (copy_typed in cpu_elementwise.cpp) run through it.
#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace mg::cpu {

// In square blocks that stay in L1.
template <typename T>
void transpose_blocks(const T* src, int64_t lds, int64_t rows, int64_t cols, T* dst, int64_t ldd) {
  constexpr int64_t kBlock = 16;
  for (int64_t r0 = 0; r0 < rows; r0 += kBlock)
    for (int64_t c0 = 0; c0 < cols; c0 += kBlock)
      for (int64_t c = c0; c < std::min(cols, c0 + kBlock); ++c)
        for (int64_t r = r0; r < std::min(rows, r0 + kBlock); ++r) dst[c * ldd + r] = src[r * lds + c];
}

// 8 x 8 blocks in AVX2 registers where the CPU has them (matrix_transpose.cpp).
void transpose_matrix_f32(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd);

template <typename T>
void transpose_matrix(const T* src, int64_t lds, int64_t rows, int64_t cols, T* dst, int64_t ldd) {
  if constexpr (std::is_same_v<T, float>) {
    transpose_matrix_f32(src, lds, rows, cols, dst, ldd);
  } else {
    transpose_blocks(src, lds, rows, cols, dst, ldd);
  }
}

}  // namespace mg::cpu
