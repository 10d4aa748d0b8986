#pragma once
// Reductions across the threads that share one row: a warp (RowThreads == 32, several rows per
// block) or a whole block (RowThreads == blockDim.x, one row per block). Every thread of the row
// gets the result, combined in a fixed order, so a row's value does not depend on timing.

namespace mg::cuda {

template <int RowThreads, typename T, typename Op>
__device__ __forceinline__ T row_reduce(T v, Op op, T* scratch /* RowThreads / 32 entries, block rows only */) {
#pragma unroll
  for (int delta = 16; delta > 0; delta /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, delta));
  if constexpr (RowThreads == 32) {
    return v;
  } else {
    constexpr int kWarps = RowThreads / 32;
    if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
    __syncthreads();
    T total = scratch[0];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) total = op(total, scratch[w]);
    __syncthreads();  // scratch may be reused by the next reduction
    return total;
  }
}

struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};

// std::max's rule (a < b ? b : a): a NaN operand on the right is dropped, as on the CPU.
struct MaxOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a < b ? b : a;
  }
};

// Rows of up to this many elements get a warp each; longer rows a block of kBlockRowThreads.
inline constexpr int64_t kWarpRowLimit = 1024;
inline constexpr int kBlockRowThreads = 256;

// A grid-stride loop over rows with RowThreads threads per row: the first row of this thread's
// group, and the step to its next one.
template <int RowThreads>
__device__ __forceinline__ int64_t first_row() {
  return int64_t{blockIdx.x} * (blockDim.x / RowThreads) + threadIdx.x / RowThreads;
}
template <int RowThreads>
__device__ __forceinline__ int64_t row_step() {
  return int64_t{gridDim.x} * (blockDim.x / RowThreads);
}

}  // namespace mg::cuda
