#pragma once
// Packing for the GEMM micro-kernels: any input strides become the unit-stride, k-major, zero
// padded panels the kernels stream through, so a transposed operand costs no copy of its own.
// Templates on the panel width so each kernel set instantiates loops with constant trip counts;
// unit-stride rows or columns take copy loops the compiler vectorises.
#include <algorithm>
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace mg::cpu {

// rows x depth of A (row stride rs, depth stride ks) into MR-row panels: panel[k][0..MR).
template <typename T, int64_t MR>
void pack_a_panels(const T* a, int64_t rs, int64_t ks, int64_t rows, int64_t depth, T* dst) {
  for (int64_t i0 = 0; i0 < rows; i0 += MR, a += MR * rs, dst += MR * depth) {
    const int64_t mr = std::min(MR, rows - i0);
    if (mr == MR && rs == 1) {
      for (int64_t k = 0; k < depth; ++k)
        for (int64_t i = 0; i < MR; ++i) dst[k * MR + i] = a[k * ks + i];
    } else if (ks == 1) {
      // Row-major A: a transpose. Reading whole rows keeps the loads sequential; the scattered
      // stores stay inside one panel, which fits in L1.
      for (int64_t i = 0; i < mr; ++i) {
        const T* row = a + i * rs;
        for (int64_t k = 0; k < depth; ++k) dst[k * MR + i] = row[k];
      }
      for (int64_t i = mr; i < MR; ++i)
        for (int64_t k = 0; k < depth; ++k) dst[k * MR + i] = T(0);
    } else {
      for (int64_t k = 0; k < depth; ++k) {
        for (int64_t i = 0; i < mr; ++i) dst[k * MR + i] = a[i * rs + k * ks];
        for (int64_t i = mr; i < MR; ++i) dst[k * MR + i] = T(0);
      }
    }
  }
}

// depth x cols of B (depth stride ks, column stride cs) into NR-column panels: panel[k][0..NR).
template <typename T, int64_t NR>
void pack_b_panels(const T* b, int64_t ks, int64_t cs, int64_t depth, int64_t cols, T* dst) {
  for (int64_t j0 = 0; j0 < cols; j0 += NR, b += NR * cs, dst += NR * depth) {
    const int64_t nr = std::min(NR, cols - j0);
    if (nr == NR && cs == 1) {
      for (int64_t k = 0; k < depth; ++k)
        for (int64_t j = 0; j < NR; ++j) dst[k * NR + j] = b[k * ks + j];
    } else if (nr == NR && ks == 1) {
      for (int64_t j = 0; j < NR; ++j) {
        const T* col = b + j * cs;
        for (int64_t k = 0; k < depth; ++k) dst[k * NR + j] = col[k];
      }
    } else {
      for (int64_t k = 0; k < depth; ++k) {
        for (int64_t j = 0; j < nr; ++j) dst[k * NR + j] = b[k * ks + j * cs];
        for (int64_t j = nr; j < NR; ++j) dst[k * NR + j] = T(0);
      }
    }
  }
}

#if defined(__x86_64__) || defined(__i386__)
// Row-major float A (unit depth stride) is the common case and a transpose; the scalar loop
// above moves about one element per cycle, which small products (10 x 40 tasks) notice. Here
// 8 rows x 8 depths at a time go through an 8x8 register transpose; AVX2, so both the AVX2
// and the AVX-512 kernel sets use it.
__attribute__((target("avx2"))) inline void transpose8x8(__m256 (&r)[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

template <int64_t MR>
__attribute__((target("avx2"))) void pack_a_rows_avx(const float* a, int64_t rs, int64_t rows, int64_t depth,
                                                     float* dst) {
  for (int64_t i0 = 0; i0 < rows; i0 += MR, a += MR * rs, dst += MR * depth) {
    const int64_t mr = std::min(MR, rows - i0);
    // 8 panel rows at a time, fewer in the group at the panel's end, which goes first: see below.
    for (int64_t g = (MR - 1) / 8 * 8; g >= 0; g -= 8) {
      const int64_t width = std::min<int64_t>(8, MR - g);
      const int64_t valid = std::clamp<int64_t>(mr - g, 0, width);
      const float* ag = a + g * rs;
      float* dg = dst + g;
      if (valid == 0) {  // padding past the last row (3 of 4 groups of a 40-wide W^T's edge panel)
        for (int64_t k = 0; k < depth; ++k) std::fill_n(dg + k * MR, width, 0.0f);
        continue;
      }
      int64_t k = 0;
      for (; k + 8 <= depth; k += 8) {
        __m256 r[8];
        for (int64_t q = 0; q < 8; ++q) r[q] = q < valid ? _mm256_loadu_ps(ag + q * rs + k) : _mm256_setzero_ps();
        transpose8x8(r);
        if (width == 8) {
          for (int64_t q = 0; q < 8; ++q) _mm256_storeu_ps(dg + (k + q) * MR, r[q]);
        } else {
          // A narrower group (MR = 6, or the last 6 rows of MR = 14) takes whole 8-lane stores
          // anyway: lanes past the width hold zeros and land on the start of the next depth's
          // row, which a later store rewrites: this group's next store, or (MR = 14) the group of
          // rows 0-7, packed after this one (AMD runs masked stores as microcode, 10x slower).
          // Only the last store of the panel could run past it.
          for (int64_t q = 0; q < 7; ++q) _mm256_storeu_ps(dg + (k + q) * MR, r[q]);
          if (k + 8 < depth) {
            _mm256_storeu_ps(dg + (k + 7) * MR, r[7]);
          } else {
            alignas(32) float last[8];
            _mm256_store_ps(last, r[7]);
            std::copy_n(last, width, dg + (k + 7) * MR);
          }
        }
      }
      for (; k < depth; ++k)
        for (int64_t q = 0; q < width; ++q) dg[k * MR + q] = q < valid ? ag[q * rs + k] : 0.0f;
    }
  }
}

// pack_a_panels with the transpose above for row-major float A.
template <int64_t MR>
void pack_a_panels_f32_avx(const float* a, int64_t rs, int64_t ks, int64_t rows, int64_t depth, float* dst) {
  if (ks == 1 && rs != 1) {
    pack_a_rows_avx<MR>(a, rs, rows, depth, dst);
  } else {
    pack_a_panels<float, MR>(a, rs, ks, rows, depth, dst);
  }
}

// Row-major float B (unit column stride: activations, a convolution's columns): each depth's
// NR columns are one copy, in whole vectors; a last, narrower panel copies what it has and pads
// with zeros. The template above does this in the baseline ISA, 4 floats at a time.
template <int64_t NR>
__attribute__((target("avx2"))) void pack_b_rows_avx(const float* b, int64_t ks, int64_t depth, int64_t cols,
                                                     float* dst) {
  static_assert(NR % 8 == 0, "panels of whole 8-float vectors");
  // Whole panels a group at a time, depth by depth: each depth's stretch of the group's columns
  // (kGroup lines) is read in one go. Panel by panel, a [576 x 196] convolution's columns (a row
  // per 784 bytes) reloaded every line of the block from L2 for each panel; all panels at once,
  // each depth's stores would land on as many pages as there are panels (256 for NC = 4096).
  constexpr int64_t kGroup = 4;
  const int64_t whole_panels = cols / NR;
  for (int64_t p0 = 0; p0 < whole_panels; p0 += kGroup) {
    const int64_t group = std::min(kGroup, whole_panels - p0);
    for (int64_t k = 0; k < depth; ++k) {
      const float* src = b + k * ks + p0 * NR;
      float* out = dst + (p0 * depth + k) * NR;
      for (int64_t p = 0; p < group; ++p, src += NR, out += NR * depth)
        for (int64_t v = 0; v < NR; v += 8) _mm256_storeu_ps(out + v, _mm256_loadu_ps(src + v));
    }
  }
  const int64_t j0 = whole_panels * NR, nr = cols - j0;
  if (nr == 0) return;
  b += j0;
  dst += j0 * depth;
  const int64_t whole = nr / 8 * 8;
  for (int64_t k = 0; k < depth; ++k) {
    const float* src = b + k * ks;
    float* out = dst + k * NR;
    for (int64_t v = 0; v < whole; v += 8) _mm256_storeu_ps(out + v, _mm256_loadu_ps(src + v));
    for (int64_t v = whole; v < NR; v += 8) _mm256_storeu_ps(out + v, _mm256_setzero_ps());
    for (int64_t j = whole; j < nr; ++j) out[j] = src[j];
  }
}

// pack_b_panels for float B. Columns that are contiguous (unit depth stride: the transposed
// weight W^T of x W^T) make panels that are the transposes of those columns, which is what
// pack_a_rows_avx makes of rows: the same code with columns for rows.
template <int64_t NR>
void pack_b_panels_f32_avx(const float* b, int64_t ks, int64_t cs, int64_t depth, int64_t cols, float* dst) {
  if (ks == 1 && cs != 1) {
    pack_a_rows_avx<NR>(b, cs, cols, depth, dst);
  } else if (cs == 1 && ks != 1) {
    pack_b_rows_avx<NR>(b, ks, depth, cols, dst);
  } else {
    pack_b_panels<float, NR>(b, ks, cs, depth, cols, dst);
  }
}
#endif

}  // namespace mg::cpu
