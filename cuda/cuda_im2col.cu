// im2col / col2im for 2-D windows over NCHW tensors. im2col: one thread per column entry, reading
// its input pixel or writing the pad value. col2im is written as a gather, not a scatter: one
// thread per output pixel sums the column entries that read it, in the CPU's (kernel row, kernel
// column) order, so it needs no atomics and gives the CPU's sums.
#include "cuda_kernels.h"
#include "cuda_launch.cuh"

namespace mg::cuda {
namespace {

struct Im2colShape {
  int64_t C, H, W, oh, ow;
  Window2d w;
};

// cols [N, C*kh*kw, oh*ow] contiguous; x any strides.
template <typename T>
__global__ void im2col_kernel(const T* x, int64_t sn, int64_t sc, int64_t sy, int64_t sx, T* cols, T pad, Im2colShape s,
                              int64_t total) {
  const Window2d& w = s.w;
  const int64_t L = s.oh * s.ow;
  const int64_t step = int64_t{gridDim.x} * blockDim.x;
  for (int64_t e = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t l = e % L, row = e / L;  // row = (n * C + c) * kh * kw + i * kw + j
    const int64_t j = row % w.kw, i = (row / w.kw) % w.kh, nc = row / (w.kw * w.kh);
    const int64_t c = nc % s.C, n = nc / s.C;
    const int64_t oy = l / s.ow, ox = l % s.ow;
    const int64_t y = oy * w.sh - w.ph + i * w.dh, xx = ox * w.sw - w.pw + j * w.dw;
    cols[e] = (y >= 0 && y < s.H && xx >= 0 && xx < s.W) ? x[n * sn + c * sc + y * sy + xx * sx] : pad;
  }
}

// The output positions o in [0, count) with o * stride + start == coord, o integral: at most one.
__device__ __forceinline__ int64_t window_position(int64_t coord, int64_t start, int64_t stride, int64_t count) {
  const int64_t d = coord - start;
  if (d < 0 || d % stride != 0) return -1;
  const int64_t o = d / stride;
  return o < count ? o : -1;
}

// out [N,C,H,W] contiguous; cols any strides.
template <typename T>
__global__ void col2im_kernel(const T* cols, int64_t s0, int64_t s1, int64_t s2, T* out, Im2colShape s, int64_t total) {
  const Window2d& w = s.w;
  const int64_t step = int64_t{gridDim.x} * blockDim.x;
  for (int64_t e = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t xx = e % s.W, y = (e / s.W) % s.H, nc = e / (s.W * s.H);
    const int64_t c = nc % s.C, n = nc / s.C;
    const T* base = cols + n * s0 + c * w.kh * w.kw * s1;
    T acc = T(0);
    for (int64_t i = 0; i < w.kh; ++i) {
      const int64_t oy = window_position(y, i * w.dh - w.ph, w.sh, s.oh);
      if (oy < 0) continue;
      for (int64_t j = 0; j < w.kw; ++j) {
        const int64_t ox = window_position(xx, j * w.dw - w.pw, w.sw, s.ow);
        if (ox < 0) continue;
        acc += base[(i * w.kw + j) * s1 + (oy * s.ow + ox) * s2];
      }
    }
    out[e] = acc;
  }
}

}  // namespace

void im2col(const Tensor& x, const Window2d& window, double pad_value, const Tensor& cols) {
  dispatch_floating(x.dtype(), "im2col", [&]<typename T>() {
    const int64_t H = x.shape()[2], W = x.shape()[3];
    const Im2colShape s{x.shape()[1], H, W, window.out_h(H), window.out_w(W), window};
    const int64_t total = cols.numel();
    im2col_kernel<T><<<blocks_for(total), kThreads, 0, stream_of(cols)>>>(
        ptr<const T>(x), x.strides()[0], x.strides()[1], x.strides()[2], x.strides()[3], ptr<T>(cols),
        static_cast<T>(pad_value), s, total);
    MG_CUDA_CHECK_LAUNCH("im2col");
  });
}

void col2im(const Tensor& cols, const Window2d& window, const Tensor& out) {
  dispatch_floating(out.dtype(), "col2im", [&]<typename T>() {
    const int64_t H = out.shape()[2], W = out.shape()[3];
    const Im2colShape s{out.shape()[1], H, W, window.out_h(H), window.out_w(W), window};
    const int64_t total = out.numel();
    col2im_kernel<T><<<blocks_for(total), kThreads, 0, stream_of(out)>>>(
        ptr<const T>(cols), cols.strides()[0], cols.strides()[1], cols.strides()[2], ptr<T>(out), s, total);
    MG_CUDA_CHECK_LAUNCH("col2im");
  });
}

}  // namespace mg::cuda
