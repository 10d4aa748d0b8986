// Layer normalisation of the rows of a contiguous [rows, cols] matrix: a warp per row (up to
// kWarpRowLimit columns) or a block per row; a pass for the mean, a pass for the biased variance
// of x - mean (two passes, as on the CPU, rather than E[x^2] - mean^2, which cancels), both summed
// in double, and a pass writing (x - mean) * rstd * weight + bias in the CPU's order of operations.
#include "cuda_kernels.h"
#include "cuda_launch.cuh"
#include "cuda_row_reduce.cuh"

namespace mg::cuda {
namespace {

template <typename T, int RowThreads>
__global__ void layer_norm_kernel(const T* x, const T* w, const T* b, T eps, T* out, T* mean_out, T* rstd_out,
                                  int64_t rows, int64_t cols) {
  __shared__ double scratch[RowThreads / 32];
  const int64_t t = threadIdx.x % RowThreads;
  const int64_t rows_per_block = blockDim.x / RowThreads;
  for (int64_t r = int64_t{blockIdx.x} * rows_per_block + threadIdx.x / RowThreads; r < rows;
       r += int64_t{gridDim.x} * rows_per_block) {
    const T* in = x + r * cols;
    T* o = out + r * cols;
    double sum = 0.0;
    for (int64_t i = t; i < cols; i += RowThreads) sum += static_cast<double>(in[i]);
    sum = row_reduce<RowThreads>(sum, SumOp{}, scratch);
    const T mean = static_cast<T>(sum / static_cast<double>(cols));
    double sq = 0.0;
    for (int64_t i = t; i < cols; i += RowThreads) {
      const T d = in[i] - mean;
      sq += static_cast<double>(d * d);
    }
    sq = row_reduce<RowThreads>(sq, SumOp{}, scratch);
    const T rstd = T(1) / sqrt(static_cast<T>(sq / static_cast<double>(cols)) + eps);
    if (t == 0) {
      mean_out[r] = mean;
      rstd_out[r] = rstd;
    }
    for (int64_t i = t; i < cols; i += RowThreads) {
      T y = (in[i] - mean) * rstd;
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
    const T* w = weight.defined() ? ptr<const T>(weight) : nullptr;
    const T* b = bias.defined() ? ptr<const T>(bias) : nullptr;
    cudaStream_t stream = stream_of(out);
    if (cols <= kWarpRowLimit)
      layer_norm_kernel<T, 32><<<blocks_for(rows * 32), kThreads, 0, stream>>>(
          ptr<const T>(x), w, b, static_cast<T>(eps), ptr<T>(out), ptr<T>(mean), ptr<T>(rstd), rows, cols);
    else
      layer_norm_kernel<T, kBlockRowThreads>
          <<<static_cast<unsigned>(std::min<int64_t>(rows, 1 << 20)), kBlockRowThreads, 0, stream>>>(
              ptr<const T>(x), w, b, static_cast<T>(eps), ptr<T>(out), ptr<T>(mean), ptr<T>(rstd), rows, cols);
    MG_CUDA_CHECK_LAUNCH("layer_norm");
  });
}

}  // namespace mg::cuda
