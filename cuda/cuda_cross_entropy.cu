// Cross-entropy of class-index targets, row by row, and its first-order backward: a warp per row
// (rows up to kWarpRowLimit long, several rows per block) or a block per row, as the softmax
// kernels. Rows are contiguous [rows, classes] (tensor/kernels_cross_entropy.cpp makes them so,
// and has checked every target against the class count).
#include <cmath>

#include "cuda_kernels.h"
#include "cuda_launch.cuh"
#include "cuda_row_reduce.cuh"

namespace mg::cuda {
namespace {

//   lse = max + log(sum(exp(x - max))),  loss = lse - x[target]  (0 where ignored)
template <typename T, int RowThreads>
__global__ void cross_entropy_kernel(const T* logits, const int64_t* target, T* loss, T* lse, int64_t nrows,
                                     int64_t classes, int64_t ignore_index) {
  __shared__ double scratch[RowThreads / 32];
  const int64_t t = threadIdx.x % RowThreads;
  for (int64_t r = first_row<RowThreads>(); r < nrows; r += row_step<RowThreads>()) {
    const T* in = logits + r * classes;
    double m = -INFINITY;
    for (int64_t i = t; i < classes; i += RowThreads) m = MaxOp{}(m, static_cast<double>(in[i]));
    T max = static_cast<T>(row_reduce<RowThreads>(m, MaxOp{}, scratch));
    if (isinf(max) && max < T(0)) max = T(0);  // all -inf: avoid (-inf) - (-inf)
    double sum = 0.0;
    for (int64_t i = t; i < classes; i += RowThreads) sum += static_cast<double>(exp(in[i] - max));
    sum = row_reduce<RowThreads>(sum, SumOp{}, scratch);
    if (t == 0) {
      const T row_lse = max + static_cast<T>(::log(sum));
      const int64_t c = target[r];
      lse[r] = row_lse;
      // A target out of range (not checked while a graph is captured) gives NaN, never a stray read.
      loss[r] = c == ignore_index ? T(0) : (c < 0 || c >= classes) ? T(NAN) : row_lse - in[c];
    }
  }
}

//   out[r, c] = grad[r] * (exp(x[r, c] - lse[r]) - (c == target[r])), 0 on ignored rows
template <typename T>
__global__ void cross_entropy_backward_kernel(const T* logits, const int64_t* target, const T* lse, const T* grad,
                                              T* out, int64_t n, int64_t classes, int64_t ignore_index) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / classes, c = i % classes;
    const int64_t want = target[r];
    out[i] = want == ignore_index            ? T(0)
             : (want < 0 || want >= classes) ? T(NAN)
                                             : grad[r] * (exp(logits[i] - lse[r]) - (c == want ? T(1) : T(0)));
  }
}

}  // namespace

void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, const Tensor& loss,
                   const Tensor& lse) {
  const char* name = "cross_entropy";
  dispatch_floating(logits.dtype(), name, [&]<typename T>() {
    const int64_t nrows = target.numel(), classes = logits.shape().back();
    auto launch = [&]<int RowThreads>(unsigned blocks, int threads) {
      cross_entropy_kernel<T, RowThreads><<<blocks, threads, 0, stream_of(loss)>>>(
          ptr<const T>(logits), ptr<const int64_t>(target), ptr<T>(loss), ptr<T>(lse), nrows, classes, ignore_index);
    };
    if (classes <= kWarpRowLimit)
      launch.template operator()<32>(blocks_for(nrows * 32), kThreads);
    else
      launch.template operator()<kBlockRowThreads>(static_cast<unsigned>(std::min<int64_t>(nrows, 1 << 20)),
                                                   kBlockRowThreads);
    MG_CUDA_CHECK_LAUNCH(name);
  });
}

void cross_entropy_backward(const Tensor& logits, const Tensor& target, int64_t ignore_index, const Tensor& lse,
                            const Tensor& grad, const Tensor& out) {
  const char* name = "cross_entropy_backward";
  dispatch_floating(logits.dtype(), name, [&]<typename T>() {
    const int64_t n = out.numel(), classes = logits.shape().back();
    cross_entropy_backward_kernel<T><<<blocks_for(n), kThreads, 0, stream_of(out)>>>(
        ptr<const T>(logits), ptr<const int64_t>(target), ptr<const T>(lse), ptr<const T>(grad), ptr<T>(out), n,
        classes, ignore_index);
    MG_CUDA_CHECK_LAUNCH(name);
  });
}

}  // namespace mg::cuda
