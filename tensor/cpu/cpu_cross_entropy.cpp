// Fused cross-entropy of class-index targets, one row of logits at a time (rows in parallel):
//   lse = max + log(sum(exp(x - max))),  loss = lse - x[target]
// with the log_softmax kernel's passes and rounding (a max pass, an exp-and-sum pass), but
// nothing written per logit: the composite log_softmax + gather wrote and re-read a whole
// log-probability matrix to keep one entry per row. The first-order backward reads each row once
// and writes its gradient once: grad * (exp(x - lse) - one_hot(target)).
// float32 rows are vectorised (simd.h, vec_math.h); float64 rows are plain loops summing in double.
#include <cmath>
#include <limits>
#include <type_traits>

#include "cpu_kernels.h"
#include "parallel.h"
#include "simd.h"
#include "softmax_rows.h"
#include "vec_math.h"

namespace mg::cpu {
namespace {

// A row of -inf logits: shift by 0 rather than compute (-inf) - (-inf).
template <typename T>
T finite_shift(T max) {
  return std::isinf(max) && max < 0 ? T(0) : max;
}

template <typename V>
[[gnu::always_inline]] inline void cross_entropy_rows_lanes(const float* x, const int64_t* target, int64_t ignore_index,
                                                            float* loss, float* lse, int64_t rows, int64_t classes) {
  bool exact = false;
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * classes;
    const float max = finite_shift(row_max<V>(in, classes));
    const float* next = r + 1 < rows ? in + classes : nullptr;
    const float shift =
        max + static_cast<float>(std::log(exp_sum_rows<V>(in, max, nullptr, classes, {next, nullptr}, exact)));
    lse[r] = shift;
    loss[r] = target[r] == ignore_index ? 0.0f : shift - in[target[r]];
  }
}
MG_VECTORIZE void cross_entropy_rows_f32(const float* x, const int64_t* target, int64_t ignore_index, float* loss,
                                         float* lse, int64_t rows, int64_t classes) {
  MG_WITH_LANES(cross_entropy_rows_lanes, x, target, ignore_index, loss, lse, rows, classes);
}

void cross_entropy_rows_f64(const double* x, const int64_t* target, int64_t ignore_index, double* loss, double* lse,
                            int64_t rows, int64_t classes) {
  for (int64_t r = 0; r < rows; ++r) {
    const double* in = x + r * classes;
    double max = -std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < classes; ++i) max = in[i] > max ? in[i] : max;
    max = finite_shift(max);
    double sum = 0.0;
    for (int64_t i = 0; i < classes; ++i) sum += std::exp(in[i] - max);
    const double shift = max + std::log(sum);
    lse[r] = shift;
    loss[r] = target[r] == ignore_index ? 0.0 : shift - in[target[r]];
  }
}

template <typename V>
[[gnu::always_inline]] inline void cross_entropy_backward_rows_lanes(const float* x, const int64_t* target,
                                                                     int64_t ignore_index, const float* lse,
                                                                     const float* grad, float* out, int64_t rows,
                                                                     int64_t classes) {
  using namespace vec;
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * classes;
    float* o = out + r * classes;
    if (target[r] == ignore_index) {
      for (int64_t i = 0; i < classes; ++i) o[i] = 0.0f;
      continue;
    }
    const float shift = lse[r], g = grad[r];
    // x - lse <= 0: the normal-range exp first, the row redone with exp16 if a term falls outside.
    int64_t i = 0;
    int_lanes<V> outside{};
    for (; i + kVecWidth <= classes; i += kVecWidth)
      store16(o + i, exp16_normal<V>(load16<V>(in + i) - shift, outside) * g);
    if (any16(outside)) {
      for (i = 0; i + kVecWidth <= classes; i += kVecWidth)
        store16(o + i, exp16<V, true>(load16<V>(in + i) - shift) * g);
    }
    for (; i < classes; ++i) o[i] = exp_f32<true>(in[i] - shift) * g;
    const int64_t t = target[r];
    o[t] = (exp_f32<true>(in[t] - shift) - 1.0f) * g;
  }
}
MG_VECTORIZE void cross_entropy_backward_rows_f32(const float* x, const int64_t* target, int64_t ignore_index,
                                                  const float* lse, const float* grad, float* out, int64_t rows,
                                                  int64_t classes) {
  MG_WITH_LANES(cross_entropy_backward_rows_lanes, x, target, ignore_index, lse, grad, out, rows, classes);
}

void cross_entropy_backward_rows_f64(const double* x, const int64_t* target, int64_t ignore_index, const double* lse,
                                     const double* grad, double* out, int64_t rows, int64_t classes) {
  for (int64_t r = 0; r < rows; ++r) {
    const double* in = x + r * classes;
    double* o = out + r * classes;
    if (target[r] == ignore_index) {
      for (int64_t i = 0; i < classes; ++i) o[i] = 0.0;
      continue;
    }
    const double shift = lse[r], g = grad[r];
    for (int64_t i = 0; i < classes; ++i) o[i] = std::exp(in[i] - shift) * g;
    const int64_t t = target[r];
    o[t] = (std::exp(in[t] - shift) - 1.0) * g;
  }
}

}  // namespace

void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, const Tensor& loss,
                   const Tensor& lse) {
  const int64_t rows = logits.shape()[0], classes = logits.shape()[1];
  const int64_t* t = target.data_ptr<int64_t>();
  dispatch_floating(logits.dtype(), "cross_entropy_rows", [&]<typename T>() {
    const T* x = logits.data_ptr<T>();
    T* l = loss.data_ptr<T>();
    T* s = lse.data_ptr<T>();
    parallel_for(rows, 4 * classes, [&](int64_t begin, int64_t end) {
      if constexpr (std::is_same_v<T, float>)
        cross_entropy_rows_f32(x + begin * classes, t + begin, ignore_index, l + begin, s + begin, end - begin,
                               classes);
      else
        cross_entropy_rows_f64(x + begin * classes, t + begin, ignore_index, l + begin, s + begin, end - begin,
                               classes);
    });
  });
}

void cross_entropy_backward(const Tensor& logits, const Tensor& target, int64_t ignore_index, const Tensor& lse,
                            const Tensor& grad, const Tensor& out) {
  const int64_t rows = logits.shape()[0], classes = logits.shape()[1];
  const int64_t* t = target.data_ptr<int64_t>();
  dispatch_floating(logits.dtype(), "cross_entropy_rows_backward", [&]<typename T>() {
    const T* x = logits.data_ptr<T>();
    const T* s = lse.data_ptr<T>();
    const T* g = grad.data_ptr<T>();
    T* o = out.data_ptr<T>();
    parallel_for(rows, 4 * classes, [&](int64_t begin, int64_t end) {
      if constexpr (std::is_same_v<T, float>)
        cross_entropy_backward_rows_f32(x + begin * classes, t + begin, ignore_index, s + begin, g + begin,
                                        o + begin * classes, end - begin, classes);
      else
        cross_entropy_backward_rows_f64(x + begin * classes, t + begin, ignore_index, s + begin, g + begin,
                                        o + begin * classes, end - begin, classes);
    });
  });
}

}  // namespace mg::cpu
