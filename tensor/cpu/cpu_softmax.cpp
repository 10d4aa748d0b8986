// Numerically stable softmax and log-softmax along any dim: subtract the row max before exp.
//   softmax:     out = exp(x - max) / sum(exp(x - max))
//   log_softmax: out = x - max - log(sum(exp(x - max)))
// Parallel over rows (all positions of the other dims). A float32 row that is contiguous along
// dim (the common case: the last dim) goes through one fused, vectorised pass structure: max,
// exp-and-sum, scale; a row is in cache after the first, so memory sees one read and one write.
// Other rows (float64, strided dims) take the scalar loop, summing in double. The first-order
// backward (softmax_backward) is fused the same way: one sum pass and one write pass per row.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "blocked_sum.h"
#include "cpu_kernels.h"
#include "simd.h"
#include "softmax_rows.h"
#include "strided_loop.h"
#include "vec_math.h"

namespace mg::cpu {
namespace {

// rows rows of len elements, row r at x + r * ldx and y + r * ldy.
template <typename V>
[[gnu::always_inline]] inline void softmax_rows_lanes(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows,
                                                      int64_t len, bool log) {
  bool exact = false;
  float next_max = rows > 0 ? row_max<V>(x, len) : 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * ldx;
    float* out = y + r * ldy;
    const float* next = r + 1 < rows ? in + ldx : nullptr;
    float max = next_max;
    if (std::isinf(max) && max < 0) max = 0.0f;  // all -inf: avoid (-inf) - (-inf)
    if (log) {
      // Nothing is stored in the exp pass, so this row's output lines are fetched for the last one.
      const float shift =
          max + static_cast<float>(std::log(exp_sum_rows<V>(in, max, nullptr, len, {next, out}, exact)));
      const auto lane_op = [shift](const V& v) __attribute__((always_inline)) { return v - shift; };
      const auto scalar_op = [shift](float v) __attribute__((always_inline)) { return v - shift; };
      if (next != nullptr) {
        next_max = finish_row_then_max<V>(in, out, next, len, lane_op, scalar_op);
      } else {
        for (int64_t i = 0; i < len; ++i) out[i] = in[i] - shift;
      }
    } else {
      // The terms are stored as they are computed; the next row's output lines are fetched for them.
      float* next_out = next != nullptr ? out + ldy : nullptr;
      const float scale = static_cast<float>(1.0 / exp_sum_rows<V>(in, max, out, len, {next, next_out}, exact));
      const auto lane_op = [scale](const V& v) __attribute__((always_inline)) { return v * scale; };
      const auto scalar_op = [scale](float v) __attribute__((always_inline)) { return v * scale; };
      if (next != nullptr) {
        next_max = finish_row_then_max<V>(out, out, next, len, lane_op, scalar_op);
      } else {
        for (int64_t i = 0; i < len; ++i) out[i] *= scale;
      }
    }
  }
}
MG_VECTORIZE void softmax_rows_f32(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t len,
                                   bool log) {
  MG_WITH_LANES(softmax_rows_lanes, x, ldx, y, ldy, rows, len, log);
}

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
  const bool fused = std::is_same_v<T, float> && (sx == 1 || len == 1) && (so == 1 || len == 1);
  parallel_for(rows.numel, 4 * len, [&](int64_t begin, int64_t end) {
    run_range(rows, {bytes(out), bytes(x)}, begin, end,
              [&](std::array<char*, 2> p, const std::array<int64_t, 2>& s, int64_t n) {
                if constexpr (std::is_same_v<T, float>) {
                  if (fused && s[0] % e == 0 && s[1] % e == 0) {
                    softmax_rows_f32(reinterpret_cast<const float*>(p[1]), s[1] / e, reinterpret_cast<float*>(p[0]),
                                     s[0] / e, n, len, log);
                    return;
                  }
                }
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

// sum(a) (b null) or sum(a * b) over n contiguous floats.
template <typename V>
[[gnu::always_inline]] inline double dot_or_sum(const float* a, const float* b, int64_t n) {
  if (b == nullptr)
    return blocked_sum(
        n, [&](int64_t i) __attribute__((always_inline)) { return vec::load16<V>(a + i); },
        [&](int64_t i) __attribute__((always_inline)) { return a[i]; });
  return blocked_sum(
      n, [&](int64_t i) __attribute__((always_inline)) { return vec::load16<V>(a + i) * vec::load16<V>(b + i); },
      [&](int64_t i) __attribute__((always_inline)) { return a[i] * b[i]; });
}

template <typename V>
[[gnu::always_inline]] inline void softmax_backward_rows_lanes(const float* y, int64_t ldy, const float* g, int64_t ldg,
                                                               float* out, int64_t ldo, int64_t rows, int64_t len,
                                                               bool log) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * ldy;
    const float* gr = g + r * ldg;
    float* o = out + r * ldo;
    if (log) {
      const float s = static_cast<float>(dot_or_sum<V>(gr, nullptr, len));
      for (int64_t i = 0; i < len; ++i) o[i] = gr[i] - vec::exp_f32<true>(yr[i]) * s;  // yr: log-probabilities, <= 0
    } else {
      const float s = static_cast<float>(dot_or_sum<V>(gr, yr, len));
      for (int64_t i = 0; i < len; ++i) o[i] = yr[i] * (gr[i] - s);
    }
  }
}
MG_VECTORIZE void softmax_backward_rows_f32(const float* y, int64_t ldy, const float* g, int64_t ldg, float* out,
                                            int64_t ldo, int64_t rows, int64_t len, bool log) {
  MG_WITH_LANES(softmax_backward_rows_lanes, y, ldy, g, ldg, out, ldo, rows, len, log);
}

template <typename T>
T exp_of(T x) {
  if constexpr (std::is_same_v<T, float>)
    return vec::exp_f32(x);
  else
    return std::exp(x);
}

template <typename T>
void softmax_backward_typed(const Tensor& y, const Tensor& grad, int dim, bool log, const Tensor& out) {
  constexpr int64_t e = sizeof(T);
  Shape rows_shape;
  Strides rows_y, rows_g, rows_out;
  for (int d = 0; d < static_cast<int>(y.dim()); ++d) {
    if (d == dim) continue;
    rows_shape.push_back(y.shape()[d]);
    rows_y.push_back(y.strides()[d]);
    rows_g.push_back(grad.strides()[d]);
    rows_out.push_back(out.strides()[d]);
  }
  const auto rows = make_plan<3>(rows_shape, {&rows_out, &rows_y, &rows_g}, {e, e, e});
  const int64_t len = y.shape()[dim];
  const int64_t sy = y.strides()[dim], sg = grad.strides()[dim], so = out.strides()[dim];
  const bool fused = std::is_same_v<T, float> && len > 0 && (len == 1 || (sy == 1 && sg == 1 && so == 1));
  parallel_for(rows.numel, 4 * len, [&](int64_t begin, int64_t end) {
    run_range(rows, {bytes(out), bytes(y), bytes(grad)}, begin, end,
              [&](std::array<char*, 3> p, const std::array<int64_t, 3>& s, int64_t n) {
                if constexpr (std::is_same_v<T, float>) {
                  if (fused && s[0] % e == 0 && s[1] % e == 0 && s[2] % e == 0) {
                    softmax_backward_rows_f32(reinterpret_cast<const float*>(p[1]), s[1] / e,
                                              reinterpret_cast<const float*>(p[2]), s[2] / e,
                                              reinterpret_cast<float*>(p[0]), s[0] / e, n, len, log);
                    return;
                  }
                }
                for (int64_t r = 0; r < n; ++r) {
                  const T* yr = reinterpret_cast<const T*>(p[1] + r * s[1]);
                  const T* gr = reinterpret_cast<const T*>(p[2] + r * s[2]);
                  T* o = reinterpret_cast<T*>(p[0] + r * s[0]);
                  double sum = 0.0;
                  if (log) {
                    for (int64_t i = 0; i < len; ++i) sum += static_cast<double>(gr[i * sg]);
                    const T st = static_cast<T>(sum);
                    for (int64_t i = 0; i < len; ++i) o[i * so] = gr[i * sg] - exp_of(yr[i * sy]) * st;
                  } else {
                    for (int64_t i = 0; i < len; ++i) sum += static_cast<double>(gr[i * sg] * yr[i * sy]);
                    const T st = static_cast<T>(sum);
                    for (int64_t i = 0; i < len; ++i) o[i * so] = yr[i * sy] * (gr[i * sg] - st);
                  }
                }
              });
  });
}

}  // namespace

void softmax_backward(const Tensor& y, const Tensor& grad, int dim, bool log, const Tensor& out) {
  dispatch_floating(y.dtype(), log ? "log_softmax_backward" : "softmax_backward",
                    [&]<typename T>() { softmax_backward_typed<T>(y, grad, dim, log, out); });
}

void softmax(const Tensor& x, int dim, bool log, const Tensor& out) {
  dispatch_floating(x.dtype(), log ? "log_softmax" : "softmax",
                    [&]<typename T>() { softmax_typed<T>(x, dim, log, out); });
}

}  // namespace mg::cpu
