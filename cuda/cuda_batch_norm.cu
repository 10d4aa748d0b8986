// Batch normalisation of a contiguous [G, N, C, S] tensor over (n, s) for each channel (g, c), and
// its first-order backward: a block per channel, grid-striding over channels. A channel is N
// slices of S values, C * S apart. As on the CPU: statistics summed in double, the variance from a
// second pass over x - mean (no E[x^2] - mean^2 cancellation), out = (x - mean) * (rstd * weight)
// + bias, and the backward's grad_x = k_grad * g + k_centered * (x - mean) + k_const.
#include "cuda_kernels.h"
#include "cuda_launch.cuh"
#include "cuda_row_reduce.cuh"

namespace mg::cuda {
namespace {

constexpr int kChannelThreads = kBlockRowThreads;

struct ChannelLayout {
  int64_t n, c, s;
  __device__ int64_t channel_offset(int64_t j) const { return ((j / c) * n * c + j % c) * s; }
  // Element i of a channel, i in [0, n * s).
  __device__ int64_t element(int64_t i) const { return (i / s) * c * s + i % s; }
  __device__ int64_t count() const { return n * s; }
};

template <typename T>
__global__ void batch_norm_kernel(const T* x, const T* w, const T* b, T eps, T* out, T* mean_out, T* var_out,
                                  T* rstd_out, int64_t channels, ChannelLayout layout) {
  __shared__ double scratch[kChannelThreads / 32];
  const int64_t count = layout.count();
  for (int64_t j = blockIdx.x; j < channels; j += gridDim.x) {
    const T* in = x + layout.channel_offset(j);
    T* o = out + layout.channel_offset(j);
    double sum = 0.0;
    for (int64_t i = threadIdx.x; i < count; i += kChannelThreads) sum += static_cast<double>(in[layout.element(i)]);
    sum = row_reduce<kChannelThreads>(sum, SumOp{}, scratch);
    const T mean = static_cast<T>(sum / static_cast<double>(count));
    double sq = 0.0;
    for (int64_t i = threadIdx.x; i < count; i += kChannelThreads) {
      const double d = static_cast<double>(in[layout.element(i)]) - static_cast<double>(mean);
      sq += d * d;
    }
    sq = row_reduce<kChannelThreads>(sq, SumOp{}, scratch);
    const T var = static_cast<T>(sq / static_cast<double>(count));
    const T rstd = T(1) / sqrt(var + eps);
    if (threadIdx.x == 0) mean_out[j] = mean, var_out[j] = var, rstd_out[j] = rstd;
    const T scale = w != nullptr ? rstd * w[j] : rstd;
    const T shift = b != nullptr ? b[j] : T(0);
    for (int64_t i = threadIdx.x; i < count; i += kChannelThreads) {
      const int64_t at = layout.element(i);
      o[at] = (in[at] - mean) * scale + shift;
    }
  }
}

template <typename T>
__global__ void batch_norm_backward_kernel(const T* x, const T* g, const T* mean_in, const T* rstd_in, const T* w,
                                           T* dx, T* dw, T* db, int64_t channels, ChannelLayout layout) {
  __shared__ double scratch[kChannelThreads / 32];
  const int64_t count = layout.count();
  for (int64_t j = blockIdx.x; j < channels; j += gridDim.x) {
    const int64_t base = layout.channel_offset(j);
    const T mean = mean_in[j];
    double sum_g = 0.0, sum_gc = 0.0;
    for (int64_t i = threadIdx.x; i < count; i += kChannelThreads) {
      const int64_t at = base + layout.element(i);
      sum_g += static_cast<double>(g[at]);
      sum_gc += static_cast<double>(g[at] * (x[at] - mean));
    }
    sum_g = row_reduce<kChannelThreads>(sum_g, SumOp{}, scratch);
    sum_gc = row_reduce<kChannelThreads>(sum_gc, SumOp{}, scratch);
    const double r = static_cast<double>(rstd_in[j]);
    const double sum_g_xhat = sum_gc * r;
    if (threadIdx.x == 0) {
      if (db != nullptr) db[j] = static_cast<T>(sum_g);
      if (dw != nullptr) dw[j] = static_cast<T>(sum_g_xhat);
    }
    if (dx == nullptr) continue;
    const double k = (w != nullptr ? static_cast<double>(w[j]) : 1.0) * r;
    const T k_grad = static_cast<T>(k);
    const T k_centered = static_cast<T>(-k * r * sum_g_xhat / static_cast<double>(count));
    const T k_const = static_cast<T>(-k * sum_g / static_cast<double>(count));
    for (int64_t i = threadIdx.x; i < count; i += kChannelThreads) {
      const int64_t at = base + layout.element(i);
      dx[at] = k_grad * g[at] + k_centered * (x[at] - mean) + k_const;
    }
  }
}

ChannelLayout layout_of(const Tensor& x) { return {x.shape()[1], x.shape()[2], x.shape()[3]}; }

unsigned blocks_for_channels(int64_t channels) {
  return static_cast<unsigned>(std::clamp<int64_t>(channels, 1, int64_t{1} << 20));
}

template <typename T>
const T* optional_ptr(const Tensor& t) {
  return t.defined() ? ptr<const T>(t) : nullptr;
}
template <typename T>
T* optional_out(const Tensor& t) {
  return t.defined() ? ptr<T>(t) : nullptr;
}

}  // namespace

void batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& out,
                const Tensor& mean, const Tensor& var, const Tensor& rstd) {
  const int64_t channels = x.shape()[0] * x.shape()[2];
  dispatch_floating(x.dtype(), "batch_norm", [&]<typename T>() {
    batch_norm_kernel<T><<<blocks_for_channels(channels), kChannelThreads, 0, stream_of(out)>>>(
        ptr<const T>(x), optional_ptr<T>(weight), optional_ptr<T>(bias), static_cast<T>(eps), ptr<T>(out), ptr<T>(mean),
        ptr<T>(var), ptr<T>(rstd), channels, layout_of(x));
    MG_CUDA_CHECK_LAUNCH("batch_norm");
  });
}

void batch_norm_backward(const Tensor& x, const Tensor& grad, const Tensor& mean, const Tensor& rstd,
                         const Tensor& weight, const Tensor& grad_x, const Tensor& grad_weight,
                         const Tensor& grad_bias) {
  const int64_t channels = x.shape()[0] * x.shape()[2];
  dispatch_floating(x.dtype(), "batch_norm_backward", [&]<typename T>() {
    batch_norm_backward_kernel<T><<<blocks_for_channels(channels), kChannelThreads, 0, stream_of(x)>>>(
        ptr<const T>(x), ptr<const T>(grad), ptr<const T>(mean), ptr<const T>(rstd), optional_ptr<T>(weight),
        optional_out<T>(grad_x), optional_out<T>(grad_weight), optional_out<T>(grad_bias), channels, layout_of(x));
    MG_CUDA_CHECK_LAUNCH("batch_norm_backward");
  });
}

}  // namespace mg::cuda
