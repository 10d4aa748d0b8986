// The vectorised float32 transcendental loops of vec_math.h, one clone per vector ISA.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#include "simd.h"
#include "vec_math.h"

namespace mg::cpu::vec {

// How far ahead (in floats) the loops below fetch their input. The hardware prefetcher runs
// ahead of a stream only while the loads keep coming, and these loops compute for longer than a
// memory access takes. On the AVX-512 machine of bench/RESULTS.md, one thread over 64 MiB:
// exp 15 -> 25 GB/s, gelu_tanh 13.5 -> 20.5, gelu_erf 11.7 -> 16.0 with the hint 4 KiB ahead
// (gelu_erf 1 KiB ahead: 14.5, 2 KiB: 16.0).
inline constexpr int64_t kPrefetchAhead = 1024;

// y[i] = f(x[i]) for an f built on exp, given as lane_fn(v, exp) on 16 lanes and scalar_fn(x)
// for the tail. Blocks of 16 vectors go through the normal-range exp, and a block where an exp
// argument falls outside that range is redone with the full-range exp16: f's bits either way,
// for fewer operations than the auto-vectorised scalar form in the common case. The range test
// is one branch per block (a lane reduction per vector would cost as much as the operations
// saved). In place (x == y), a block goes through a buffer, so that a redo still reads x.
template <typename V, typename LaneFn, typename ScalarFn>
[[gnu::always_inline]] inline void map_by_exp(const float* x, float* y, int64_t n, LaneFn lane_fn, ScalarFn scalar_fn) {
  constexpr int64_t kBlock = 16 * kVecWidth;
  alignas(64) float buffer[kBlock];
  const bool in_place = x == y;
  const int64_t whole = n / kVecWidth * kVecWidth;
  for (int64_t i = 0; i < whole; i += kBlock) {
    const int64_t len = std::min(kBlock, whole - i);
    const float* in = x + i;
    float* out = in_place ? buffer : y + i;
    int_lanes<V> outside{};
    const auto normal_exp = [&](const V& v) __attribute__((always_inline)) {
      return exp16_normal<V, false>(v, outside);
    };
    for (int64_t j = 0; j < len; j += kVecWidth) {
      __builtin_prefetch(in + j + kPrefetchAhead);
      store16(out + j, lane_fn(load16<V>(in + j), normal_exp));
    }
    if (any16(outside)) {
      const auto full_exp = [](const V& v) __attribute__((always_inline)) { return exp16<V>(v); };
      for (int64_t j = 0; j < len; j += kVecWidth) store16(out + j, lane_fn(load16<V>(in + j), full_exp));
    }
    if (in_place) {
      for (int64_t j = 0; j < len; j += kVecWidth) store16(y + i + j, load16<V>(buffer + j));
    }
  }
  for (int64_t i = whole; i < n; ++i) y[i] = scalar_fn(x[i]);
}

template <typename V>
[[gnu::always_inline]] inline void exp_lanes(const float* x, float* y, int64_t n) {
  map_by_exp<V>(
      x, y, n, [](const V& v, auto exp) __attribute__((always_inline)) { return exp(v); },
      [](float v) __attribute__((always_inline)) { return exp_f32(v); });
}
template <typename V>
[[gnu::always_inline]] inline void sigmoid_lanes(const float* x, float* y, int64_t n) {
  map_by_exp<V>(
      x, y, n, [](const V& v, auto exp) __attribute__((always_inline)) { return sigmoid_by(v, exp); },
      [](float v) __attribute__((always_inline)) { return sigmoid_f32(v); });
}
template <typename V>
[[gnu::always_inline]] inline void gelu_tanh_lanes(const float* x, float* y, int64_t n) {
  map_by_exp<V>(
      x, y, n, [](const V& v, auto exp) __attribute__((always_inline)) { return gelu_tanh_by(v, exp); },
      [](float v) __attribute__((always_inline)) { return gelu_tanh_f32(v); });
}

MG_VECTORIZE void exp_f32(const float* x, float* y, int64_t n) { MG_WITH_LANES(exp_lanes, x, y, n); }

MG_VECTORIZE void sigmoid_f32(const float* x, float* y, int64_t n) { MG_WITH_LANES(sigmoid_lanes, x, y, n); }

// y[i] = f(x[i]) for a branch-free f that the compiler vectorises, 16 floats at a time with one
// prefetch each (x == y is fine: each element is read before it is written).
template <typename F>
[[gnu::always_inline]] inline void map_prefetched(const float* x, float* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + kVecWidth <= n; i += kVecWidth) {
    __builtin_prefetch(x + i + kPrefetchAhead);
    MG_NO_OVERLAP
    for (int64_t j = 0; j < kVecWidth; ++j) y[i + j] = f(x[i + j]);
  }
  for (; i < n; ++i) y[i] = f(x[i]);
}

MG_VECTORIZE void tanh_f32(const float* x, float* y, int64_t n) {
  map_prefetched(
      x, y, n, [](float v) __attribute__((always_inline)) { return tanh_f32(v); });
}

MG_VECTORIZE void erf_f32(const float* x, float* y, int64_t n) {
  map_prefetched(
      x, y, n, [](float v) __attribute__((always_inline)) { return erf_f32(v); });
}

template <typename V>
[[gnu::always_inline]] inline void softplus_lanes(const float* x, float* y, int64_t n) {
  map_by_exp<V>(
      x, y, n, [](const V& v, auto exp) __attribute__((always_inline)) {
        const V e = exp(-abs16(v));
        return max16(v, splat16<V>(0.0f)) + e * log1p_ratio(e);
      },
      [](float v) __attribute__((always_inline)) { return softplus_f32(v); });
}

MG_VECTORIZE void softplus_f32(const float* x, float* y, int64_t n) { MG_WITH_LANES(softplus_lanes, x, y, n); }

// y[i] = fast(x[i]) over blocks of 16 vectors where every key(x[i]) <= limit (an unsigned key
// of the bits: one integer operation and a max per vector to check), otherwise exact(x[i]).
template <typename Key, typename Fast, typename Exact>
[[gnu::always_inline]] inline void map_by_key(const float* x, float* y, int64_t n, Key key, uint32_t limit, Fast fast,
                                              Exact exact) {
  constexpr int64_t kBlock = 16 * kVecWidth;
  for (int64_t i = 0; i < n; i += kBlock) {
    const int64_t len = std::min(kBlock, n - i);
    const float* in = x + i;
    float* out = y + i;
    __builtin_prefetch(in + kPrefetchAhead);
    __builtin_prefetch(in + kPrefetchAhead + kBlock / 2);
    uint32_t largest = 0;
    for (int64_t j = 0; j < len; ++j) largest = std::max(largest, key(in[j]));
    if (largest <= limit) {
      MG_NO_OVERLAP
      for (int64_t j = 0; j < len; ++j) out[j] = fast(in[j]);
    } else {
      for (int64_t j = 0; j < len; ++j) out[j] = exact(in[j]);
    }
  }
}

// Blocks of positive normal finite x (every block of a log's usual input) skip log_f32's
// subnormal scaling and special values.
MG_VECTORIZE void log_f32(const float* x, float* y, int64_t n) {
  map_by_key(
      x, y, n, [](float v) __attribute__((always_inline)) { return normal_key(v); }, kLargestNormalKey,
      [](float v) __attribute__((always_inline)) { return log_normal_f32(v); },
      [](float v) __attribute__((always_inline)) { return log_f32(v); });
}

// Blocks with a lane beyond kSinCosBound, infinite or NaN (|x|'s bits above the bound's) use the
// C library.
inline constexpr auto abs_bits = [](float v) __attribute__((always_inline)) {
  return std::bit_cast<uint32_t>(v) & 0x7fffffffu;
};

MG_VECTORIZE void sin_f32(const float* x, float* y, int64_t n) {
  map_by_key(
      x, y, n, abs_bits, std::bit_cast<uint32_t>(kSinCosBound),
      [](float v) __attribute__((always_inline)) { return sin_cos_reduced_f32<false>(v); },
      [](float v) { return std::sin(v); });
}

MG_VECTORIZE void cos_f32(const float* x, float* y, int64_t n) {
  map_by_key(
      x, y, n, abs_bits, std::bit_cast<uint32_t>(kSinCosBound),
      [](float v) __attribute__((always_inline)) { return sin_cos_reduced_f32<true>(v); },
      [](float v) { return std::cos(v); });
}

MG_VECTORIZE void sign_f32(const float* x, float* y, int64_t n) {
  map_prefetched(
      x, y, n, [](float v) __attribute__((always_inline)) { return sign_f32(v); });
}

MG_VECTORIZE void gelu_tanh_f32(const float* x, float* y, int64_t n) { MG_WITH_LANES(gelu_tanh_lanes, x, y, n); }

// gelu_erf's two stages (vec_math.h) in two passes over blocks of 16 vectors: the first leaves
// the exponent and t / 2 in L1, the second takes exp and finishes. The first pass also finds the
// block's largest |x|; where it is at most kGeluErfNormalBound (every block, for activations of
// a sane scale), the exponent is within exp16_normal's range and the block takes that exp. A NaN
// x needs no check of its own: the result is x times a factor, NaN whatever the factor.
template <typename V>
[[gnu::always_inline]] inline void gelu_erf_lanes(const float* x, float* y, int64_t n) {
  constexpr int64_t kBlock = 16 * kVecWidth;
  alignas(64) float exponent[kBlock], half_t[kBlock];
  const int64_t whole = n / kVecWidth * kVecWidth;
  for (int64_t i = 0; i < whole; i += kBlock) {
    const int64_t len = std::min(kBlock, whole - i);
    V largest = splat16<V>(0.0f);
    for (int64_t j = 0; j < len; j += kVecWidth) {
      __builtin_prefetch(x + i + j + kPrefetchAhead);
      const V abs_x = abs16(load16<V>(x + i + j));
      largest = max16(abs_x, largest);
      V h;
      store16(exponent + j, gelu_erf_exponent(abs_x, h));
      store16(half_t + j, h);
    }
    // In place, pass two reads each x before it writes that y.
    const auto finish = [&](auto exp) __attribute__((always_inline)) {
      for (int64_t j = 0; j < len; j += kVecWidth)
        store16(y + i + j,
                gelu_erf_finish16(load16<V>(x + i + j), load16<V>(half_t + j), exp(load16<V>(exponent + j))));
    };
    if (hmax16(largest) <= kGeluErfNormalBound) {
      finish([](const V& v) __attribute__((always_inline)) {
        int_lanes<V> unused{};
        return exp16_normal<V, true>(v, unused);
      });
    } else {
      finish([](const V& v) __attribute__((always_inline)) { return exp16<V, true>(v); });
    }
  }
  for (int64_t i = whole; i < n; ++i) y[i] = gelu_erf_f32(x[i]);
}

MG_VECTORIZE void gelu_erf_f32(const float* x, float* y, int64_t n) { MG_WITH_LANES(gelu_erf_lanes, x, y, n); }

}  // namespace mg::cpu::vec
