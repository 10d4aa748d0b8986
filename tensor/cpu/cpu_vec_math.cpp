// The vectorised float32 transcendental loops of vec_math.h, one clone per vector ISA.
#include <algorithm>
#include <cstdint>

#include "simd.h"
#include "vec_math.h"

namespace mg::cpu::vec {

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
    for (int64_t j = 0; j < len; j += kVecWidth) store16(out + j, lane_fn(load16<V>(in + j), normal_exp));
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

MG_VECTORIZE void tanh_f32(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = tanh_f32(x[i]);
}

MG_VECTORIZE void gelu_tanh_f32(const float* x, float* y, int64_t n) { MG_WITH_LANES(gelu_tanh_lanes, x, y, n); }

MG_VECTORIZE void gelu_erf_f32(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu_erf_f32(x[i]);
}

}  // namespace mg::cpu::vec
