#pragma once
// The two row reductions behind every fused softmax-like kernel (softmax, log_softmax,
// cross-entropy): the maximum of a float32 row and sum(exp(x - shift)), vectorised over 16 lanes.
// Always inlined: a call out of a loop cloned per ISA (simd.h) would run baseline code.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "vec_math.h"

namespace mg::cpu {

// Lane sums go to double every this many elements, so long rows keep float32 rounding per block.
inline constexpr int64_t kSoftmaxSumBlock = 4096;

[[gnu::always_inline]] inline float row_max(const float* x, int64_t n) {
  using namespace vec;
  vf16 lanes = splat16(-std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + kVecWidth <= n; i += kVecWidth) lanes = max16(load16(x + i), lanes);
  float m = hmax16(lanes);
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// sum(exp(x - shift)), storing the terms in y when y is not null.
[[gnu::always_inline]] inline double exp_sum(const float* x, float shift, float* y, int64_t n) {
  using namespace vec;
  double total = 0.0;
  int64_t i = 0;
  while (i + kVecWidth <= n) {
    const int64_t stop = std::min(n, i + kSoftmaxSumBlock);
    vf16 lanes{};
    for (; i + kVecWidth <= stop; i += kVecWidth) {
      const vf16 e = exp16(load16(x + i) - shift);
      if (y != nullptr) store16(y + i, e);
      lanes += e;
    }
    total += hsum16(lanes);
  }
  for (; i < n; ++i) {
    const float e = vec::exp_f32(x[i] - shift);
    if (y != nullptr) y[i] = e;
    total += static_cast<double>(e);
  }
  return total;
}

}  // namespace mg::cpu
