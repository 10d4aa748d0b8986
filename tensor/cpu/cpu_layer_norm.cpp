// Fused layer normalisation, one row at a time (rows in parallel): a pass for the mean, a pass
// for the biased variance of x - mean (two passes rather than E[x^2] - mean^2, which cancels),
// and a pass writing (x - mean) * rstd * weight + bias, the composite's order of operations.
// A row is in cache after the first pass, so memory sees one read of x and one write of out.
// float32 rows are vectorised (16 lanes, summed to double every block); float64 rows are plain
// loops summing in double.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "blocked_sum.h"
#include "cpu_kernels.h"
#include "parallel.h"
#include "simd.h"
#include "vec_math.h"

namespace mg::cpu {
namespace {

// sum((x[i] - center)^power), power 1 or 2.
template <typename V, int Power>
[[gnu::always_inline]] inline double centered_sum_f32(const float* x, int64_t n, float center) {
  return blocked_sum(
      n,
      [&](int64_t i) __attribute__((always_inline)) {
        const V d = vec::load16<V>(x + i) - center;
        return Power == 1 ? d : d * d;
      },
      [&](int64_t i) __attribute__((always_inline)) {
        const float d = x[i] - center;
        return Power == 1 ? d : d * d;
      });
}

template <typename V>
[[gnu::always_inline]] inline void layer_norm_rows_lanes(const float* x, const float* w, const float* b, float eps,
                                                         float* out, float* mean_out, float* rstd_out, int64_t rows,
                                                         int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * cols;
    float* o = out + r * cols;
    const float mean = static_cast<float>(centered_sum_f32<V, 1>(in, cols, 0.0f) / static_cast<double>(cols));
    const float var = static_cast<float>(centered_sum_f32<V, 2>(in, cols, mean) / static_cast<double>(cols));
    const float rstd = 1.0f / std::sqrt(var + eps);
    mean_out[r] = mean;
    rstd_out[r] = rstd;
    if (w != nullptr && b != nullptr) {
      for (int64_t i = 0; i < cols; ++i) o[i] = (in[i] - mean) * rstd * w[i] + b[i];
    } else if (w != nullptr) {
      for (int64_t i = 0; i < cols; ++i) o[i] = (in[i] - mean) * rstd * w[i];
    } else if (b != nullptr) {
      for (int64_t i = 0; i < cols; ++i) o[i] = (in[i] - mean) * rstd + b[i];
    } else {
      for (int64_t i = 0; i < cols; ++i) o[i] = (in[i] - mean) * rstd;
    }
  }
}

MG_VECTORIZE void layer_norm_rows_f32(const float* x, const float* w, const float* b, float eps, float* out,
                                      float* mean_out, float* rstd_out, int64_t rows, int64_t cols) {
  MG_WITH_LANES(layer_norm_rows_lanes, x, w, b, eps, out, mean_out, rstd_out, rows, cols);
}

void layer_norm_rows_f64(const double* x, const double* w, const double* b, double eps, double* out, double* mean_out,
                         double* rstd_out, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const double* in = x + r * cols;
    double* o = out + r * cols;
    double sum = 0.0;
    for (int64_t i = 0; i < cols; ++i) sum += in[i];
    const double mean = sum / static_cast<double>(cols);
    double sq = 0.0;
    for (int64_t i = 0; i < cols; ++i) sq += (in[i] - mean) * (in[i] - mean);
    const double rstd = 1.0 / std::sqrt(sq / static_cast<double>(cols) + eps);
    mean_out[r] = mean;
    rstd_out[r] = rstd;
    for (int64_t i = 0; i < cols; ++i) {
      double y = (in[i] - mean) * rstd;
      if (w != nullptr) y = y * w[i];
      if (b != nullptr) y = y + b[i];
      o[i] = y;
    }
  }
}

}  // namespace

void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& out,
                const Tensor& mean, const Tensor& rstd) {
  const int64_t rows = x.shape()[0], cols = x.shape()[1];
  dispatch_floating(x.dtype(), "layer_norm", [&]<typename T>() {
    const T* w = weight.defined() ? weight.data_ptr<T>() : nullptr;
    const T* b = bias.defined() ? bias.data_ptr<T>() : nullptr;
    parallel_for(rows, 4 * cols, [&](int64_t begin, int64_t end) {
      if constexpr (std::is_same_v<T, float>)
        layer_norm_rows_f32(x.data_ptr<T>() + begin * cols, w, b, static_cast<T>(eps), out.data_ptr<T>() + begin * cols,
                            mean.data_ptr<T>() + begin, rstd.data_ptr<T>() + begin, end - begin, cols);
      else
        layer_norm_rows_f64(x.data_ptr<T>() + begin * cols, w, b, static_cast<T>(eps), out.data_ptr<T>() + begin * cols,
                            mean.data_ptr<T>() + begin, rstd.data_ptr<T>() + begin, end - begin, cols);
    });
  });
}

}  // namespace mg::cpu
