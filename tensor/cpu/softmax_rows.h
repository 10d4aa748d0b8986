#pragma once
// The two row reductions behind every fused softmax-like kernel (softmax, log_softmax,
// cross-entropy): the maximum of a float32 row and sum(exp(x - shift)), vectorised over 16 lanes
// of lane type V (vec_math.h). Always inlined: a call out of a loop cloned per ISA (simd.h) would run baseline code.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "blocked_sum.h"
#include "vec_math.h"

namespace mg::cpu {

template <typename V>
[[gnu::always_inline]] inline float row_max(const float* x, int64_t n) {
  using namespace vec;
  V lanes = splat16<V>(-std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + kVecWidth <= n; i += kVecWidth) lanes = max16(load16<V>(x + i), lanes);
  float m = hmax16(lanes);
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// sum(exp(x - shift)), storing the terms in y when y is not null, with lane_exp as the 16-lane
// exp (the scalar tail takes exp_f32). The exp is bound by arithmetic, so the loop also
// prefetches the next row (prefetch, when not null) a line per 16 elements: the next row_max then
// finds it in cache instead of waiting on memory with the arithmetic idle.
template <typename V, typename LaneExp>
[[gnu::always_inline]] inline double exp_sum_by(const float* x, float shift, float* y, int64_t n, const float* prefetch,
                                                LaneExp lane_exp) {
  return blocked_sum(
      n,
      [&](int64_t i) __attribute__((always_inline)) {
        if (prefetch != nullptr) __builtin_prefetch(prefetch + i);
        const V e = lane_exp(vec::load16<V>(x + i) - shift);
        if (y != nullptr) vec::store16(y + i, e);
        return e;
      },
      [&](int64_t i) __attribute__((always_inline)) {
        const float e = vec::exp_f32<true>(x[i] - shift);
        if (y != nullptr) y[i] = e;
        return e;
      });
}

template <typename V>
[[gnu::always_inline]] inline double exp_sum(const float* x, float shift, float* y, int64_t n,
                                             const float* prefetch = nullptr) {
  return exp_sum_by<V>(
      x, shift, y, n, prefetch, [](const V& v) __attribute__((always_inline)) { return vec::exp16<V, true>(v); });
}

// exp_sum with exp16_normal: the same sum and terms when every term is a normal float, and false
// when one is not (a term below 2^-125, a NaN), in which case the caller must redo the row.
template <typename V>
[[gnu::always_inline]] inline bool exp_sum_normal(const float* x, float shift, float* y, int64_t n,
                                                  const float* prefetch, double& sum) {
  vec::int_lanes<V> outside{};
  sum = exp_sum_by<V>(
      x, shift, y, n,
      prefetch, [&](const V& v) __attribute__((always_inline)) { return vec::exp16_normal<V>(v, outside); });
  return !vec::any16(outside);
}

// exp_sum for a run of rows: the normal-range exp first, until a row has a term outside that
// range; that row is redone and the run's later rows go straight to exp16 (`exact` stays true),
// so a run of masked rows (-inf terms) pays for one wasted pass, not one per row.
template <typename V>
[[gnu::always_inline]] inline double exp_sum_rows(const float* x, float shift, float* y, int64_t n,
                                                  const float* prefetch, bool& exact) {
  if (!exact) {
    double sum = 0.0;
    if (exp_sum_normal<V>(x, shift, y, n, prefetch, sum)) return sum;
    exact = true;
  }
  return exp_sum<V>(x, shift, y, n, prefetch);
}

}  // namespace mg::cpu
