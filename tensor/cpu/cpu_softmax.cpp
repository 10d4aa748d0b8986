// Numerically stable softmax and log-softmax along any dim: subtract the row max before exp.
//   softmax:     out = exp(x - max) / sum(exp(x - max))
//   log_softmax: out = x - max - log(sum(exp(x - max)))
// Parallel over rows (all positions of the other dims); the sum accumulates in double.
#include <cmath>
#include <limits>

#include "cpu_kernels.h"
#include "strided_loop.h"

namespace mg::cpu {
namespace {

template <typename T>
void softmax_typed(const Tensor& x, int dim, bool log, const Tensor& out) {
  constexpr int64_t e = sizeof(T);
  Shape rows_shape;
  Strides rows_x, rows_out;
  for (int d = 0; d < static_cast<int>(x.dim()); ++d) {
    if (d == dim) continue;
    rows_shape.push_back(x.shape()[d]);
    rows_x.push_back(x.strides()[d]);
    rows_out.push_back(out.strides()[d]);
  }
  const auto rows = make_plan<2>(rows_shape, {&rows_out, &rows_x}, {e, e});
  const int64_t len = x.shape()[dim];
  const int64_t sx = x.strides()[dim], so = out.strides()[dim];
  parallel_for(rows.numel, 4 * len, [&](int64_t begin, int64_t end) {
    run_range(rows, {bytes(out), bytes(x)}, begin, end,
              [&](std::array<char*, 2> p, const std::array<int64_t, 2>& s, int64_t n) {
                for (int64_t r = 0; r < n; ++r) {
                  const T* in = reinterpret_cast<const T*>(p[1] + r * s[1]);
                  T* o = reinterpret_cast<T*>(p[0] + r * s[0]);
                  T max = -std::numeric_limits<T>::infinity();
                  for (int64_t i = 0; i < len; ++i) max = std::max(max, in[i * sx]);
                  if (std::isinf(max) && max < 0) max = T(0);  // all -inf: avoid (-inf) - (-inf)
                  double sum = 0.0;
                  if (log) {
                    for (int64_t i = 0; i < len; ++i) sum += static_cast<double>(std::exp(in[i * sx] - max));
                    const T shift = max + static_cast<T>(std::log(sum));
                    for (int64_t i = 0; i < len; ++i) o[i * so] = in[i * sx] - shift;
                  } else {
                    for (int64_t i = 0; i < len; ++i) {
                      const T v = std::exp(in[i * sx] - max);
                      o[i * so] = v;
                      sum += static_cast<double>(v);
                    }
                    const T scale = static_cast<T>(1.0 / sum);
                    for (int64_t i = 0; i < len; ++i) o[i * so] *= scale;
                  }
                }
              });
  });
}

}  // namespace

void softmax(const Tensor& x, int dim, bool log, const Tensor& out) {
  dispatch_floating(x.dtype(), log ? "log_softmax" : "softmax",
                    [&]<typename T>() { softmax_typed<T>(x, dim, log, out); });
}

}  // namespace mg::cpu
