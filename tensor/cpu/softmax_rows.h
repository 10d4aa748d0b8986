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

// The last pass over a row, out[i] = op(out_or_in[i]) for a 16-lane op and its scalar form,
// fused with the first pass over the next row, its row_max (the same lanes, the same result):
// one loop storing while the other only loads, instead of two half-idle ones.
template <typename V, typename LaneOp, typename ScalarOp>
[[gnu::always_inline]] inline float finish_row_then_max(const float* in, float* out, const float* next, int64_t n,
                                                        LaneOp lane_op, ScalarOp scalar_op) {
  using namespace vec;
  V lanes = splat16<V>(-std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + kVecWidth <= n; i += kVecWidth) {
    store16(out + i, lane_op(load16<V>(in + i)));
    lanes = max16(load16<V>(next + i), lanes);
  }
  float m = hmax16(lanes);
  for (int64_t j = i; j < n; ++j) out[j] = scalar_op(in[j]);
  for (; i < n; ++i) m = next[i] > m ? next[i] : m;
  return m;
}

// Lines for exp_sum's loop to fetch while its arithmetic runs, a line per 16 elements, each
// optional: `read`, the next row (whose row_max then finds it in cache instead of waiting on
// memory with the arithmetic idle), and `write`, an output row that a later pass writes (which
// then finds its lines owned instead of stalling on each one's read for ownership).
struct RowPrefetch {
  const float* read = nullptr;
  float* write = nullptr;
};

// sum(exp(x - shift)), storing the terms in y when y is not null, with lane_exp as the 16-lane
// exp (the scalar tail takes exp_f32).
template <typename V, typename LaneExp>
[[gnu::always_inline]] inline double exp_sum_by(const float* x, float shift, float* y, int64_t n,
                                                const RowPrefetch& prefetch, LaneExp lane_exp) {
  return blocked_sum(
      n,
      [&](int64_t i) __attribute__((always_inline)) {
        if (prefetch.read != nullptr) __builtin_prefetch(prefetch.read + i);
        if (prefetch.write != nullptr) __builtin_prefetch(prefetch.write + i, 1);
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
                                             const RowPrefetch& prefetch = {}) {
  return exp_sum_by<V>(
      x, shift, y, n, prefetch, [](const V& v) __attribute__((always_inline)) { return vec::exp16<V, true>(v); });
}

// exp_sum with exp16_normal: the same sum and terms as exp_sum when every x - shift is in
// [kExpNormalFloor, 0], and false when one is not (below it, or NaN), in which case the caller
// must redo the row.
template <typename V>
[[gnu::always_inline]] inline bool exp_sum_normal(const float* x, float shift, float* y, int64_t n,
                                                  const RowPrefetch& prefetch, double& sum) {
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
                                                  const RowPrefetch& prefetch, bool& exact) {
  if (!exact) {
    double sum = 0.0;
    if (exp_sum_normal<V>(x, shift, y, n, prefetch, sum)) return sum;
    exact = true;
  }
  return exp_sum<V>(x, shift, y, n, prefetch);
}

}  // namespace mg::cpu
