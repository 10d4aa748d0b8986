#pragma once
// The float32 row sum behind the fused row kernels (softmax, cross-entropy, layer norm): 16 float
// lanes (of the type the lane term returns, vec_math.h), summed to double every kBlockedSumBlock
// elements so that a long row keeps float32 rounding only per block, and the scalar tail added in
// double. Each caller gives the term of element i twice, as a 16-lane vector starting at i and as
// one float, and every kernel built on it rounds the same way.
// Always inlined, and so must the terms be: a call out of a loop cloned per ISA (simd.h) would
// run baseline code.
#include <algorithm>
#include <cstdint>

#include "vec_math.h"

namespace mg::cpu {

inline constexpr int64_t kBlockedSumBlock = 4096;

template <typename LaneTerm, typename ScalarTerm>
[[gnu::always_inline]] inline double blocked_sum(int64_t n, LaneTerm lane_term, ScalarTerm scalar_term) {
  using namespace vec;
  double total = 0.0;
  int64_t i = 0;
  while (i + kVecWidth <= n) {
    const int64_t stop = std::min(n, i + kBlockedSumBlock);
    decltype(lane_term(i)) lanes{};
    for (; i + kVecWidth <= stop; i += kVecWidth) lanes += lane_term(i);
    total += hsum16(lanes);
  }
  for (; i < n; ++i) total += static_cast<double>(scalar_term(i));
  return total;
}

}  // namespace mg::cpu
