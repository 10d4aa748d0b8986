// Fused batch normalisation of a contiguous [G, N, C, S] tensor over (n, s) for each channel
// (g, c), and its first-order backward; channels run in parallel. A channel is N slices of S
// contiguous values, C * S apart.
// Statistics take one pass over the channel: each slice's sum and centred sum of squares (the
// slice is in L1 for the second), merged into the channel's mean and squared deviation with
// Chan's update, so there is no E[x^2] - mean^2 cancellation. A second pass writes
// (x - mean) * (rstd * weight) + bias. The backward reads x and grad once for its two sums and once
// more to write grad_x. Sums are in double; float32 slices are vectorised (blocked_sum.h).
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

// Lane terms are generic lambdas so that float64, which sums plainly, never instantiates them.
// One channel: slices of s values, slice k starting at offset k * stride.
struct ChannelGeometry {
  int64_t slices, s, stride;
};

template <typename T, typename LaneTerm, typename ScalarTerm>
[[gnu::always_inline]] inline double slice_sum(int64_t s, LaneTerm lane_term, ScalarTerm scalar_term) {
  if constexpr (std::is_same_v<T, float>) {
    return blocked_sum(s, lane_term, scalar_term);
  } else {
    double total = 0.0;
    for (int64_t i = 0; i < s; ++i) total += static_cast<double>(scalar_term(i));
    return total;
  }
}

// The channel's mean and sum of squared deviations from it. V: the lane type of float32 sums.
template <typename T, typename V = vec::vf8x2>
[[gnu::always_inline]] inline void channel_stats(const T* x, ChannelGeometry geo, double& mean, double& m2) {
  using namespace vec;
  double count = 0.0;
  mean = 0.0, m2 = 0.0;
  const double s = static_cast<double>(geo.s);
  for (int64_t k = 0; k < geo.slices; ++k) {
    const T* p = x + k * geo.stride;
    const int64_t ahead = k + 1 < geo.slices ? geo.stride : 0;
    const double slice_mean = slice_sum<T>(
                                  geo.s,
                                  [&](auto i) __attribute__((always_inline)) {
                                    __builtin_prefetch(p + ahead + i);
                                    return load16<V>(p + i);
                                  },
                                  [&](int64_t i) __attribute__((always_inline)) { return p[i]; }) /
                              s;
    const T center = static_cast<T>(slice_mean);
    double squares = slice_sum<T>(
        geo.s,
        [&](auto i) __attribute__((always_inline)) {
          const V d = load16<V>(p + i) - center;
          return d * d;
        },
        [&](int64_t i) __attribute__((always_inline)) {
          const T d = p[i] - center;
          return d * d;
        });
    // Squares were taken about the rounded center: sum (x - c)^2 = sum (x - m)^2 + s (m - c)^2.
    const double off = slice_mean - static_cast<double>(center);
    squares = std::max(squares - s * off * off, 0.0);
    const double total = count + s, delta = slice_mean - mean;
    mean += delta * s / total;
    m2 += squares + delta * delta * count * s / total;
    count = total;
  }
}

// The slices of a channel are C * S apart, each too short for the hardware prefetcher to pick up
// its stream before it ends: each pass asks for the next slice while it works on this one.
template <typename T>
[[gnu::always_inline]] inline void prefetch_for_write(T* p, int64_t n) {
  for (int64_t i = 0; i < n; i += 64 / static_cast<int64_t>(sizeof(T))) __builtin_prefetch(p + i, 1);
}

template <typename T>
[[gnu::always_inline]] inline void channel_normalise(const T* x, T* out, ChannelGeometry geo, T mean, T scale,
                                                     T shift) {
  for (int64_t k = 0; k < geo.slices; ++k) {
    const T* p = x + k * geo.stride;
    T* o = out + k * geo.stride;
    if (k + 1 < geo.slices) prefetch_for_write(o + geo.stride, geo.s);
    for (int64_t i = 0; i < geo.s; ++i) o[i] = (p[i] - mean) * scale + shift;
  }
}

// sum g and sum g * (x - mean) over the channel.
template <typename T, typename V = vec::vf8x2>
[[gnu::always_inline]] inline void channel_grad_sums(const T* x, const T* g, ChannelGeometry geo, T mean, double& sum_g,
                                                     double& sum_gc) {
  using namespace vec;
  sum_g = 0.0, sum_gc = 0.0;
  for (int64_t k = 0; k < geo.slices; ++k) {
    const T* p = x + k * geo.stride;
    const T* q = g + k * geo.stride;
    const int64_t ahead = k + 1 < geo.slices ? geo.stride : 0;
    sum_g += slice_sum<T>(
        geo.s,
        [&](auto i) __attribute__((always_inline)) {
          __builtin_prefetch(p + ahead + i);
          __builtin_prefetch(q + ahead + i);
          return load16<V>(q + i);
        },
        [&](int64_t i) __attribute__((always_inline)) { return q[i]; });
    sum_gc += slice_sum<T>(
        geo.s, [&](auto i) __attribute__((always_inline)) { return load16<V>(q + i) * (load16<V>(p + i) - mean); },
        [&](int64_t i) __attribute__((always_inline)) { return q[i] * (p[i] - mean); });
  }
}

// dx = k_grad * g + k_centered * (x - mean) + k_const.
template <typename T>
[[gnu::always_inline]] inline void channel_grad_x(const T* x, const T* g, T* dx, ChannelGeometry geo, T mean, T k_grad,
                                                  T k_centered, T k_const) {
  for (int64_t k = 0; k < geo.slices; ++k) {
    const T* p = x + k * geo.stride;
    const T* q = g + k * geo.stride;
    T* o = dx + k * geo.stride;
    if (k + 1 < geo.slices) prefetch_for_write(o + geo.stride, geo.s);
    for (int64_t i = 0; i < geo.s; ++i) o[i] = k_grad * q[i] + k_centered * (p[i] - mean) + k_const;
  }
}

// The per-ISA clones (simd.h): the templates above are inlined into each.
MG_VECTORIZE void channel_stats_f32(const float* x, ChannelGeometry geo, double& mean, double& m2) {
  if (vec::wide_lanes())
    channel_stats<float, vec::vf16>(x, geo, mean, m2);
  else
    channel_stats<float, vec::vf8x2>(x, geo, mean, m2);
}
MG_VECTORIZE void channel_normalise_f32(const float* x, float* out, ChannelGeometry geo, float mean, float scale,
                                        float shift) {
  channel_normalise(x, out, geo, mean, scale, shift);
}
MG_VECTORIZE void channel_grad_sums_f32(const float* x, const float* g, ChannelGeometry geo, float mean, double& sum_g,
                                        double& sum_gc) {
  if (vec::wide_lanes())
    channel_grad_sums<float, vec::vf16>(x, g, geo, mean, sum_g, sum_gc);
  else
    channel_grad_sums<float, vec::vf8x2>(x, g, geo, mean, sum_g, sum_gc);
}
MG_VECTORIZE void channel_grad_x_f32(const float* x, const float* g, float* dx, ChannelGeometry geo, float mean,
                                     float k_grad, float k_centered, float k_const) {
  channel_grad_x(x, g, dx, geo, mean, k_grad, k_centered, k_const);
}

template <typename T>
void stats(const T* x, ChannelGeometry geo, double& mean, double& m2) {
  if constexpr (std::is_same_v<T, float>)
    channel_stats_f32(x, geo, mean, m2);
  else
    channel_stats(x, geo, mean, m2);
}
template <typename T>
void normalise(const T* x, T* out, ChannelGeometry geo, T mean, T scale, T shift) {
  if constexpr (std::is_same_v<T, float>)
    channel_normalise_f32(x, out, geo, mean, scale, shift);
  else
    channel_normalise(x, out, geo, mean, scale, shift);
}
template <typename T>
void grad_sums(const T* x, const T* g, ChannelGeometry geo, T mean, double& sum_g, double& sum_gc) {
  if constexpr (std::is_same_v<T, float>)
    channel_grad_sums_f32(x, g, geo, mean, sum_g, sum_gc);
  else
    channel_grad_sums(x, g, geo, mean, sum_g, sum_gc);
}
template <typename T>
void write_grad_x(const T* x, const T* g, T* dx, ChannelGeometry geo, T mean, T k_grad, T k_centered, T k_const) {
  if constexpr (std::is_same_v<T, float>)
    channel_grad_x_f32(x, g, dx, geo, mean, k_grad, k_centered, k_const);
  else
    channel_grad_x(x, g, dx, geo, mean, k_grad, k_centered, k_const);
}

// x is [G, N, C, S]: channel j = g * C + c starts at (g * N * C + c) * S.
struct Layout {
  int64_t groups, n, c, s;
  explicit Layout(const Tensor& x) : groups(x.shape()[0]), n(x.shape()[1]), c(x.shape()[2]), s(x.shape()[3]) {}
  int64_t channels() const { return groups * c; }
  int64_t offset(int64_t j) const { return ((j / c) * n * c + j % c) * s; }
  ChannelGeometry geometry() const { return {n, s, c * s}; }
};

}  // namespace

void batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& out,
                const Tensor& mean, const Tensor& var, const Tensor& rstd) {
  const Layout layout(x);
  const ChannelGeometry geo = layout.geometry();
  const double count = static_cast<double>(layout.n * layout.s);
  dispatch_floating(x.dtype(), "batch_norm", [&]<typename T>() {
    const T* w = weight.defined() ? weight.data_ptr<T>() : nullptr;
    const T* b = bias.defined() ? bias.data_ptr<T>() : nullptr;
    const T* in = x.data_ptr<T>();
    T* o = out.data_ptr<T>();
    T *mean_out = mean.data_ptr<T>(), *var_out = var.data_ptr<T>(), *rstd_out = rstd.data_ptr<T>();
    parallel_for(layout.channels(), 3 * layout.n * layout.s, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        double m = 0.0, m2 = 0.0;
        const int64_t at = layout.offset(j);
        stats(in + at, geo, m, m2);
        const T channel_mean = static_cast<T>(m), channel_var = static_cast<T>(m2 / count);
        const T channel_rstd = T(1) / std::sqrt(channel_var + static_cast<T>(eps));
        mean_out[j] = channel_mean, var_out[j] = channel_var, rstd_out[j] = channel_rstd;
        normalise(in + at, o + at, geo, channel_mean, w != nullptr ? channel_rstd * w[j] : channel_rstd,
                  b != nullptr ? b[j] : T(0));
      }
    });
  });
}

void batch_norm_backward(const Tensor& x, const Tensor& grad, const Tensor& mean, const Tensor& rstd,
                         const Tensor& weight, const Tensor& grad_x, const Tensor& grad_weight,
                         const Tensor& grad_bias) {
  const Layout layout(x);
  const ChannelGeometry geo = layout.geometry();
  const double count = static_cast<double>(layout.n * layout.s);
  dispatch_floating(x.dtype(), "batch_norm_backward", [&]<typename T>() {
    const T* w = weight.defined() ? weight.data_ptr<T>() : nullptr;
    const T *in = x.data_ptr<T>(), *g = grad.data_ptr<T>();
    const T *mean_in = mean.data_ptr<T>(), *rstd_in = rstd.data_ptr<T>();
    T* dx = grad_x.defined() ? grad_x.data_ptr<T>() : nullptr;
    T* dw = grad_weight.defined() ? grad_weight.data_ptr<T>() : nullptr;
    T* db = grad_bias.defined() ? grad_bias.data_ptr<T>() : nullptr;
    parallel_for(layout.channels(), 5 * layout.n * layout.s, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        const int64_t at = layout.offset(j);
        double sum_g = 0.0, sum_gc = 0.0;
        grad_sums(in + at, g + at, geo, mean_in[j], sum_g, sum_gc);
        const double r = static_cast<double>(rstd_in[j]);
        const double sum_g_xhat = sum_gc * r;
        if (db != nullptr) db[j] = static_cast<T>(sum_g);
        if (dw != nullptr) dw[j] = static_cast<T>(sum_g_xhat);
        if (dx == nullptr) continue;
        const double k_grad = (w != nullptr ? static_cast<double>(w[j]) : 1.0) * r;
        write_grad_x(in + at, g + at, dx + at, geo, mean_in[j], static_cast<T>(k_grad),
                     static_cast<T>(-k_grad * r * sum_g_xhat / count), static_cast<T>(-k_grad * sum_g / count));
      }
    });
  });
}

}  // namespace mg::cpu
