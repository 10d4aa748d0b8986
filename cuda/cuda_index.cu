// Indexing kernels: index_select, index_add, gather, scatter_add. Indices arrive range-checked,
// except while a graph is captured (nothing can be read on the host then): an index outside
// [0, size) selects NaN (0 for int64) and accumulates nothing, instead of touching memory
// outside the operand.
// One thread per element of the operand that drives the loop (the output for the selections, the
// source for the accumulations). The accumulations add with atomics: two source elements may hit
// the same output element, and float sums then depend on arrival order in the last bits.
#include <type_traits>

#include "cuda_geometry.cuh"
#include "cuda_kernels.h"
#include "cuda_launch.cuh"
#include "cuda_math.cuh"

namespace mg::cuda {
namespace {

template <typename T>
__device__ __forceinline__ T out_of_range_value() {
  if constexpr (std::is_floating_point_v<T>) {
    return T(NAN);
  } else {
    return T(0);
  }
}

__device__ __forceinline__ bool in_range(int64_t i, int64_t size) { return i >= 0 && i < size; }

// The operand's strides with dim's set to 0: the position along dim comes from the index.
Strides without_dim(const Tensor& t, int dim) {
  Strides s = t.strides();
  s[dim] = 0;
  return s;
}

// out[.., j, ..] = x[.., index[j], ..]; operands: out, x (dim stride 0).
template <typename T>
__global__ void index_select_kernel(DimGeometry<2> g, int64_t n, T* out, const T* x, int64_t x_dim_stride,
                                    int64_t x_dim_size, const int64_t* index, int64_t index_stride) {
  const int64_t step = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t off[2];
    const int64_t j = dim_offsets_of(g, i, off);
    const int64_t at = index[j * index_stride];
    out[off[0]] = in_range(at, x_dim_size) ? x[off[1] + at * x_dim_stride] : out_of_range_value<T>();
  }
}

// out[.., index[j], ..] += src[.., j, ..]; operands: src, out (dim stride 0).
template <typename T>
__global__ void index_add_kernel(DimGeometry<2> g, int64_t n, const T* src, T* out, int64_t out_dim_stride,
                                 int64_t out_dim_size, const int64_t* index, int64_t index_stride) {
  const int64_t step = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t off[2];
    const int64_t j = dim_offsets_of(g, i, off);
    const int64_t at = index[j * index_stride];
    if (in_range(at, out_dim_size)) atomic_accumulate(out + off[1] + at * out_dim_stride, src[off[0]]);
  }
}

// out[i] = x[.., index[i], ..]; operands: out, index, x (dim stride 0).
template <typename T>
__global__ void gather_kernel(DimGeometry<3> g, int64_t n, T* out, const int64_t* index, const T* x,
                              int64_t x_dim_stride, int64_t x_dim_size) {
  const int64_t step = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t off[3];
    dim_offsets_of(g, i, off);
    const int64_t at = index[off[1]];
    out[off[0]] = in_range(at, x_dim_size) ? x[off[2] + at * x_dim_stride] : out_of_range_value<T>();
  }
}

// out[.., index[i], ..] += src[i]; operands: index, src, out (dim stride 0).
template <typename T>
__global__ void scatter_add_kernel(DimGeometry<3> g, int64_t n, const int64_t* index, const T* src, T* out,
                                   int64_t out_dim_stride, int64_t out_dim_size) {
  const int64_t step = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t off[3];
    dim_offsets_of(g, i, off);
    const int64_t at = index[off[0]];
    if (in_range(at, out_dim_size)) atomic_accumulate(out + off[2] + at * out_dim_stride, src[off[1]]);
  }
}

}  // namespace

void index_select(const Tensor& x, int dim, const Tensor& index, const Tensor& out) {
  dispatch_dtype(x.dtype(), [&]<typename T>() {
    const Strides xs = without_dim(x, dim);
    const DimGeometry<2> g = make_dim_geometry<2>("index_select", out.shape(), {&out.strides(), &xs}, dim);
    const int64_t n = out.numel();
    index_select_kernel<T>
        <<<blocks_for(n), kThreads, 0, stream_of(out)>>>(g, n, ptr<T>(out), ptr<const T>(x), x.strides()[dim],
                                                         x.shape()[dim], ptr<const int64_t>(index), index.strides()[0]);
    MG_CUDA_CHECK_LAUNCH("index_select");
  });
}

void index_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  dispatch_dtype(out.dtype(), [&]<typename T>() {
    const Strides os = without_dim(out, dim);
    const DimGeometry<2> g = make_dim_geometry<2>("index_add", src.shape(), {&src.strides(), &os}, dim);
    const int64_t n = src.numel();
    index_add_kernel<T><<<blocks_for(n), kThreads, 0, stream_of(out)>>>(g, n, ptr<const T>(src), ptr<T>(out),
                                                                        out.strides()[dim], out.shape()[dim],
                                                                        ptr<const int64_t>(index), index.strides()[0]);
    MG_CUDA_CHECK_LAUNCH("index_add");
  });
}

void gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out) {
  dispatch_dtype(x.dtype(), [&]<typename T>() {
    const Strides xs = without_dim(x, dim);
    const DimGeometry<3> g = make_dim_geometry<3>("gather", out.shape(), {&out.strides(), &index.strides(), &xs}, dim);
    const int64_t n = out.numel();
    gather_kernel<T><<<blocks_for(n), kThreads, 0, stream_of(out)>>>(g, n, ptr<T>(out), ptr<const int64_t>(index),
                                                                     ptr<const T>(x), x.strides()[dim], x.shape()[dim]);
    MG_CUDA_CHECK_LAUNCH("gather");
  });
}

void scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  dispatch_dtype(out.dtype(), [&]<typename T>() {
    const Strides os = without_dim(out, dim);
    const DimGeometry<3> g =
        make_dim_geometry<3>("scatter_add", index.shape(), {&index.strides(), &src.strides(), &os}, dim);
    const int64_t n = index.numel();
    scatter_add_kernel<T><<<blocks_for(n), kThreads, 0, stream_of(out)>>>(
        g, n, ptr<const int64_t>(index), ptr<const T>(src), ptr<T>(out), out.strides()[dim], out.shape()[dim]);
    MG_CUDA_CHECK_LAUNCH("scatter_add");
  });
}

}  // namespace mg::cuda
