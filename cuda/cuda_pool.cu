// Max pooling straight from the image planes (a thread per output), and its adjoint
// max_unpool2d (a thread per plane, so repeated positions add without atomics and in the CPU's
// order). Ties and NaN as on the CPU: the first maximum in window order, a NaN over numbers.
#include "cuda_kernels.h"
#include "cuda_launch.cuh"

namespace mg::cuda {
namespace {

template <typename T>
__device__ __forceinline__ bool beats(T v, T best) {
  return v > best || (v != v && best == best);  // v != v: v is NaN
}

template <typename T>
__global__ void max_pool2d_kernel(const T* x, int64_t height, int64_t width, Window2d w, int64_t oh, int64_t ow, T* out,
                                  int64_t* indices, int64_t total) {
  for (int64_t e = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t plane = e / (oh * ow), oy = e / ow % oh, ox = e % ow;
    const T* p = x + plane * height * width;
    T best{};
    int64_t at = -1;
    for (int64_t i = 0; i < w.kh; ++i) {
      const int64_t y = oy * w.sh - w.ph + i * w.dh;
      if (y < 0 || y >= height) continue;
      for (int64_t j = 0; j < w.kw; ++j) {
        const int64_t xx = ox * w.sw - w.pw + j * w.dw;
        if (xx < 0 || xx >= width) continue;
        const T v = p[y * width + xx];
        if (at < 0 || beats(v, best)) best = v, at = y * width + xx;
      }
    }
    out[e] = best;
    indices[e] = at;
  }
}

template <typename T>
__global__ void max_unpool2d_kernel(const T* grad, const int64_t* indices, T* out, int64_t planes, int64_t area,
                                    int64_t positions) {
  for (int64_t p = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; p < planes; p += int64_t{gridDim.x} * blockDim.x) {
    T* plane = out + p * area;
    for (int64_t i = 0; i < area; ++i) plane[i] = T(0);
    // Positions outside the plane (possible only when a captured graph skipped the host check)
    // place nothing.
    for (int64_t i = 0; i < positions; ++i) {
      const int64_t at = indices[p * positions + i];
      if (at >= 0 && at < area) plane[at] += grad[p * positions + i];
    }
  }
}

}  // namespace

void max_pool2d(const Tensor& x, const Window2d& window, const Tensor& out, const Tensor& indices) {
  const int64_t total = out.numel();
  dispatch_floating(x.dtype(), "max_pool2d", [&]<typename T>() {
    max_pool2d_kernel<T><<<blocks_for(total), kThreads, 0, stream_of(out)>>>(
        ptr<const T>(x), x.shape()[2], x.shape()[3], window, out.shape()[2], out.shape()[3], ptr<T>(out),
        ptr<int64_t>(indices), total);
    MG_CUDA_CHECK_LAUNCH("max_pool2d");
  });
}

void max_unpool2d(const Tensor& grad, const Tensor& indices, const Tensor& out) {
  const int64_t planes = out.shape()[0] * out.shape()[1];
  dispatch_floating(out.dtype(), "max_unpool2d", [&]<typename T>() {
    max_unpool2d_kernel<T><<<blocks_for(planes), kThreads, 0, stream_of(out)>>>(
        ptr<const T>(grad), ptr<const int64_t>(indices), ptr<T>(out), planes, out.shape()[2] * out.shape()[3],
        grad.shape()[2] * grad.shape()[3]);
    MG_CUDA_CHECK_LAUNCH("max_unpool2d");
  });
}

}  // namespace mg::cuda
