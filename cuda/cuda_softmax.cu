// Softmax and log-softmax along any dim, and their first-order backward: a warp per row (rows up
// to kWarpRowLimit long, several rows per block) or a block per row, three passes over the row as
// on the CPU (max, sum of exp(x - max) in double, write), reading element i of a row at
// base + i * stride so that any dim and any strides work without a copy.
#include <cmath>

#include "cuda_geometry.cuh"
#include "cuda_kernels.h"
#include "cuda_launch.cuh"
#include "cuda_row_reduce.cuh"

namespace mg::cuda {
namespace {

template <typename T, int RowThreads>
__global__ void softmax_kernel(const T* x, T* out, Geometry<2> rows, int64_t nrows, int64_t len, int64_t sx, int64_t so,
                               bool log) {
  __shared__ double scratch[RowThreads / 32];
  const int64_t t = threadIdx.x % RowThreads;
  for (int64_t r = first_row<RowThreads>(); r < nrows; r += row_step<RowThreads>()) {
    int64_t off[2];
    offsets_of<2, int64_t>(rows, r, off);
    const T* in = x + off[1];
    T* o = out + off[0];
    double m = -INFINITY;
    for (int64_t i = t; i < len; i += RowThreads) m = MaxOp{}(m, static_cast<double>(in[i * sx]));
    T max = static_cast<T>(row_reduce<RowThreads>(m, MaxOp{}, scratch));
    if (isinf(max) && max < T(0)) max = T(0);  // all -inf: avoid (-inf) - (-inf)
    double sum = 0.0;
    for (int64_t i = t; i < len; i += RowThreads) sum += static_cast<double>(exp(in[i * sx] - max));
    sum = row_reduce<RowThreads>(sum, SumOp{}, scratch);
    if (log) {
      const T shift = max + static_cast<T>(::log(sum));
      for (int64_t i = t; i < len; i += RowThreads) o[i * so] = in[i * sx] - shift;
    } else {
      const T scale = static_cast<T>(1.0 / sum);
      for (int64_t i = t; i < len; i += RowThreads) o[i * so] = exp(in[i * sx] - max) * scale;
    }
  }
}

//   softmax:     out = y * (g - sum(g * y))      log_softmax: out = g - exp(y) * sum(g)
template <typename T, int RowThreads>
__global__ void softmax_backward_kernel(const T* y, const T* g, T* out, Geometry<3> rows, int64_t nrows, int64_t len,
                                        int64_t sy, int64_t sg, int64_t so, bool log) {
  __shared__ double scratch[RowThreads / 32];
  const int64_t t = threadIdx.x % RowThreads;
  for (int64_t r = first_row<RowThreads>(); r < nrows; r += row_step<RowThreads>()) {
    int64_t off[3];
    offsets_of<3, int64_t>(rows, r, off);
    const T* yr = y + off[1];
    const T* gr = g + off[2];
    T* o = out + off[0];
    double sum = 0.0;
    if (log) {
      for (int64_t i = t; i < len; i += RowThreads) sum += static_cast<double>(gr[i * sg]);
    } else {
      for (int64_t i = t; i < len; i += RowThreads) sum += static_cast<double>(gr[i * sg] * yr[i * sy]);
    }
    const T s = static_cast<T>(row_reduce<RowThreads>(sum, SumOp{}, scratch));
    if (log) {
      for (int64_t i = t; i < len; i += RowThreads) o[i * so] = gr[i * sg] - exp(yr[i * sy]) * s;
    } else {
      for (int64_t i = t; i < len; i += RowThreads) o[i * so] = yr[i * sy] * (gr[i * sg] - s);
    }
  }
}

template <typename Launch>
void launch_rows(int64_t nrows, int64_t len, Launch&& launch) {
  if (len <= kWarpRowLimit) {
    launch.template operator()<32>(blocks_for(nrows * 32), kThreads);
  } else {
    launch.template operator()<kBlockRowThreads>(static_cast<unsigned>(std::min<int64_t>(nrows, 1 << 20)),
                                                 kBlockRowThreads);
  }
}

}  // namespace

void softmax(const Tensor& x, int dim, bool log, const Tensor& out) {
  const char* name = log ? "log_softmax" : "softmax";
  dispatch_floating(x.dtype(), name, [&]<typename T>() {
    Shape shape;
    Strides xs, os;
    drop_dim(x.shape(), x.strides(), dim, shape, xs);
    drop_dim(out.shape(), out.strides(), dim, shape, os);
    const Geometry<2> rows = make_geometry<2>(name, shape, {&os, &xs});
    const int64_t nrows = numel_of(shape), len = x.shape()[dim];
    launch_rows(nrows, len, [&]<int RowThreads>(unsigned blocks, int threads) {
      softmax_kernel<T, RowThreads><<<blocks, threads, 0, stream_of(out)>>>(
          ptr<const T>(x), ptr<T>(out), rows, nrows, len, x.strides()[dim], out.strides()[dim], log);
    });
    MG_CUDA_CHECK_LAUNCH(name);
  });
}

void softmax_backward(const Tensor& y, const Tensor& grad, int dim, bool log, const Tensor& out) {
  const char* name = log ? "log_softmax_backward" : "softmax_backward";
  dispatch_floating(y.dtype(), name, [&]<typename T>() {
    Shape shape;
    Strides ys, gs, os;
    drop_dim(y.shape(), y.strides(), dim, shape, ys);
    drop_dim(grad.shape(), grad.strides(), dim, shape, gs);
    drop_dim(out.shape(), out.strides(), dim, shape, os);
    const Geometry<3> rows = make_geometry<3>(name, shape, {&os, &ys, &gs});
    const int64_t nrows = numel_of(shape), len = y.shape()[dim];
    launch_rows(nrows, len, [&]<int RowThreads>(unsigned blocks, int threads) {
      softmax_backward_kernel<T, RowThreads>
          <<<blocks, threads, 0, stream_of(out)>>>(ptr<const T>(y), ptr<const T>(grad), ptr<T>(out), rows, nrows, len,
                                                   y.strides()[dim], grad.strides()[dim], out.strides()[dim], log);
    });
    MG_CUDA_CHECK_LAUNCH(name);
  });
}

}  // namespace mg::cuda
