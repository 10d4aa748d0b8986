// Max pooling straight from the image planes, and its adjoint (max_unpool2d), planes in parallel.
// The general loop walks each window's positions inside the plane; the 2x2 stride-2 window of
// the conv4 model has an AVX2 loop of its own for float32. Both pick the same element: the first
// maximum in window order, a NaN over any number.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cpu_kernels.h"
#include "parallel.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace mg::cpu {
namespace {

// Bitwise, not short-circuit: on real data the outcome is a coin flip, and the first kernel's
// mispredicted branches cost ~8 ns per output.
template <typename T>
[[gnu::always_inline]] inline bool beats(T v, T best) {
  return (v > best) | ((v != v) & (best == best));  // v != v: v is NaN
}

template <typename T>
void max_pool_plane(const T* plane, int64_t height, int64_t width, const Window2d& w, int64_t oh, int64_t ow, T* out,
                    int64_t* indices) {
  for (int64_t oy = 0; oy < oh; ++oy) {
    for (int64_t ox = 0; ox < ow; ++ox) {
      T best{};
      int64_t at = -1;
      for (int64_t i = 0; i < w.kh; ++i) {
        const int64_t y = oy * w.sh - w.ph + i * w.dh;
        if (y < 0 || y >= height) continue;
        for (int64_t j = 0; j < w.kw; ++j) {
          const int64_t x = ox * w.sw - w.pw + j * w.dw;
          if (x < 0 || x >= width) continue;
          const T v = plane[y * width + x];
          const bool take = (at < 0) | beats(v, best);
          best = take ? v : best;
          at = take ? y * width + x : at;
        }
      }
      out[oy * ow + ox] = best;
      indices[oy * ow + ox] = at;
    }
  }
}

#if defined(__x86_64__) || defined(__i386__)
#define MG_POOL_2X2_AVX2 1
// The 2x2 stride-2 window, 8 outputs of one output row at a time: the even and odd columns of
// the two input rows split apart (a shuffle within each 128-bit half, then across the halves),
// the best of each horizontal pair (the left one wins ties), then the better of the two rows'
// pairs (the top one wins ties): the first maximum in row-major window order, as the general
// loop finds it, written with each output row once. Written with intrinsics because GCC lowers
// the even/odd shuffles of a plain loop before it clones it per ISA, which leaves them scalar;
// a plain loop over whole planes ran at 2.5x the time of its bytes.
bool is_plain_2x2(const Window2d& w) {
  return w.kh == 2 && w.kw == 2 && w.sh == 2 && w.sw == 2 && w.ph == 0 && w.pw == 0 && w.dh == 1 && w.dw == 1;
}

// beats for 8 lanes: not (v <= best), which also holds where v is NaN, unless best is NaN.
__attribute__((target("avx2"))) inline __m256 beats8(__m256 v, __m256 best) {
  return _mm256_and_ps(_mm256_cmp_ps(v, best, _CMP_NLE_UQ), _mm256_cmp_ps(best, best, _CMP_ORD_Q));
}

// Lanes [0, count) all ones.
__attribute__((target("avx2"))) inline __m256i first_lanes(int64_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<int64_t>(count, 8))),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The shuffles below give [l0 l2 h0 h2 | l4 l6 h4 h6] of lo and hi; this puts its 64-bit quarters in order.
__attribute__((target("avx2"))) inline __m256 in_order(__m256 v) {
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), _MM_SHUFFLE(3, 1, 2, 0)));
}

struct PairBest {
  __m256 value;
  __m256i column;  // 0 where the left element wins, 1 where the right one does
};

// The best of each of the pairs in row[0, 2 * count), count <= 8.
__attribute__((target("avx2"))) inline PairBest pair_best(const float* row, int64_t count) {
  __m256 lo, hi;
  if (count == 8) {
    lo = _mm256_loadu_ps(row), hi = _mm256_loadu_ps(row + 8);
  } else {  // masked lanes read nothing, so the row may end right after its last pair
    lo = _mm256_maskload_ps(row, first_lanes(2 * count));
    hi = _mm256_maskload_ps(row + 8, first_lanes(std::max<int64_t>(0, 2 * count - 8)));
  }
  const __m256 left = in_order(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)));
  const __m256 right = in_order(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1)));
  const __m256 right_wins = beats8(right, left);
  return {_mm256_blendv_ps(left, right, right_wins), _mm256_srli_epi32(_mm256_castps_si256(right_wins), 31)};
}

__attribute__((target("avx2"))) void max_pool_plane_2x2_avx2(const float* plane, int64_t height, int64_t width,
                                                             int64_t ow, float* out, int64_t* indices) {
  const __m256i lane_pair = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
  const __m256i row_below = _mm256_set1_epi32(static_cast<int>(width));
  for (int64_t oy = 0; oy < height / 2; ++oy) {
    const float* top = plane + 2 * oy * width;
    for (int64_t ox = 0; ox < ow; ox += 8) {
      const int64_t count = std::min<int64_t>(8, ow - ox);
      const PairBest t = pair_best(top + 2 * ox, count), b = pair_best(top + width + 2 * ox, count);
      const __m256 bottom_wins = beats8(b.value, t.value);
      const __m256 best = _mm256_blendv_ps(t.value, b.value, bottom_wins);
      // Plane position of the window's top-left element, plus the winner's offset from it.
      const __m256i corner = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(2 * oy * width + 2 * ox)), lane_pair);
      const __m256i offset =
          _mm256_blendv_epi8(t.column, _mm256_add_epi32(row_below, b.column), _mm256_castps_si256(bottom_wins));
      const __m256i at = _mm256_add_epi32(corner, offset);
      const __m256i at_lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(at));
      const __m256i at_hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(at, 1));
      float* o = out + oy * ow + ox;
      auto* i = reinterpret_cast<long long*>(indices + oy * ow + ox);
      if (count == 8) {
        _mm256_storeu_ps(o, best);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(i), at_lo);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(i + 4), at_hi);
      } else {
        const __m256i mask = first_lanes(count);
        _mm256_maskstore_ps(o, mask, best);
        _mm256_maskstore_epi64(i, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(mask)), at_lo);
        _mm256_maskstore_epi64(i + 4, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(mask, 1)), at_hi);
      }
    }
  }
}
#endif

}  // namespace

void max_pool2d(const Tensor& x, const Window2d& window, const Tensor& out, const Tensor& indices) {
  const int64_t planes = x.shape()[0] * x.shape()[1], height = x.shape()[2], width = x.shape()[3];
  const int64_t oh = out.shape()[2], ow = out.shape()[3];
#if MG_POOL_2X2_AVX2
  // Positions are computed in 32 bits.
  static const bool avx2 = __builtin_cpu_supports("avx2");
  const bool plain = avx2 && is_plain_2x2(window) && height * width <= INT32_MAX;
#endif
  dispatch_floating(x.dtype(), "max_pool2d", [&]<typename T>() {
    const T* in = x.data_ptr<T>();
    T* o = out.data_ptr<T>();
    int64_t* at = indices.data_ptr<int64_t>();
    parallel_for(planes, height * width, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const T* plane = in + p * height * width;
#if MG_POOL_2X2_AVX2
        if constexpr (std::is_same_v<T, float>) {
          if (plain) {
            max_pool_plane_2x2_avx2(plane, height, width, ow, o + p * oh * ow, at + p * oh * ow);
            continue;
          }
        }
#endif
        max_pool_plane(plane, height, width, window, oh, ow, o + p * oh * ow, at + p * oh * ow);
      }
    });
  });
}

void max_unpool2d(const Tensor& grad, const Tensor& indices, const Tensor& out) {
  const int64_t planes = out.shape()[0] * out.shape()[1], area = out.shape()[2] * out.shape()[3];
  const int64_t positions = grad.shape()[2] * grad.shape()[3];
  dispatch_floating(out.dtype(), "max_unpool2d", [&]<typename T>() {
    const T* g = grad.data_ptr<T>();
    const int64_t* at = indices.data_ptr<int64_t>();
    T* o = out.data_ptr<T>();
    parallel_for(planes, area + positions, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        T* plane = o + p * area;
        std::fill(plane, plane + area, T(0));
        const T* src = g + p * positions;
        const int64_t* where = at + p * positions;
        for (int64_t i = 0; i < positions; ++i) plane[where[i]] += src[i];
      }
    });
  });
}

}  // namespace mg::cpu
