// Reductions (sum, max, min over any set of dims) and arg-reductions (argmax / argmin along one dim).
//
// The kept dims and the reduced dims each become one merged geometry. Two shapes of work:
//   - "inner" reductions (the reduced elements of one output lie close together, e.g. a row
//     sum): a warp per output, its lanes striding over the reduced elements, then a warp
//     shuffle; few outputs with long rows split each row over several blocks instead;
//   - "outer" reductions (neighbouring outputs read neighbouring inputs, e.g. a column sum of a
//     row-major matrix): a thread per output walks the reduced elements, so a warp reads
//     consecutive addresses; few outputs split the walk into chunks.
// A split writes per-chunk partial results to a scratch tensor and a second kernel merges them in
// chunk order, so the result does not depend on timing. Sums of floats accumulate in double and
// int64 sums wrap around, as on the CPU; max and min propagate NaN.
#include <algorithm>
#include <type_traits>

#include "cuda_geometry.cuh"
#include "cuda_kernels.h"
#include "cuda_launch.cuh"
#include "cuda_math.cuh"

namespace mg::cuda {
namespace {

template <ReduceOp Op, typename T>
struct Reducer {
  using Acc =
      std::conditional_t<Op == ReduceOp::Sum, std::conditional_t<std::is_floating_point_v<T>, double, int64_t>, T>;

  __device__ static Acc init() {
    if constexpr (Op == ReduceOp::Sum) return Acc(0);
    if constexpr (Op == ReduceOp::Max) {
      if constexpr (std::is_floating_point_v<T>) return -static_cast<T>(INFINITY);
      return INT64_MIN;
    }
    if constexpr (Op == ReduceOp::Min) {
      if constexpr (std::is_floating_point_v<T>) return static_cast<T>(INFINITY);
      return INT64_MAX;
    }
    return Acc(0);
  }

  __device__ static Acc merge(Acc acc, Acc v) {
    if constexpr (Op == ReduceOp::Sum) {
      if constexpr (std::is_integral_v<T>)
        return static_cast<Acc>(static_cast<uint64_t>(acc) + static_cast<uint64_t>(v));
      else
        return acc + v;
    }
    if constexpr (Op == ReduceOp::Max) return (v > acc || is_nan(v)) ? v : acc;
    if constexpr (Op == ReduceOp::Min) return (v < acc || is_nan(v)) ? v : acc;
    return acc;
  }
};

// Reduced elements [begin, end) of the output whose first input element is x + base.
template <ReduceOp Op, typename T, typename Index>
__device__ __forceinline__ typename Reducer<Op, T>::Acc reduce_range(const T* x, int64_t base, const Geometry<1>& red,
                                                                     Index begin, Index end, Index step) {
  using R = Reducer<Op, T>;
  typename R::Acc acc = R::init();
  if (red.ndim == 1) {  // the common case: one (merged) reduced dim, no division
    const int64_t s = red.strides[0][0];
    for (Index r = begin; r < end; r += step) acc = R::merge(acc, static_cast<typename R::Acc>(x[base + r * s]));
  } else {
    for (Index r = begin; r < end; r += step) {
      int64_t off[1];
      offsets_of<1, Index>(red, r, off);
      acc = R::merge(acc, static_cast<typename R::Acc>(x[base + off[0]]));
    }
  }
  return acc;
}

template <ReduceOp Op, typename Acc>
__device__ __forceinline__ Acc warp_merge(Acc acc) {
#pragma unroll
  for (int delta = 16; delta > 0; delta /= 2) {
    const Acc other = shuffle_down(acc, delta);
    if constexpr (Op == ReduceOp::Sum) {
      if constexpr (std::is_integral_v<Acc>)
        acc = static_cast<Acc>(static_cast<uint64_t>(acc) + static_cast<uint64_t>(other));
      else
        acc = acc + other;
    } else if constexpr (Op == ReduceOp::Max) {
      acc = (other > acc || is_nan(other)) ? other : acc;
    } else {
      acc = (other < acc || is_nan(other)) ? other : acc;
    }
  }
  return acc;
}

// Inner reductions: one warp per (output, split). With splits == 1 the warp writes out;
// otherwise it writes its partial to partial[split * outputs + o].
template <ReduceOp Op, typename T, typename Index>
__global__ void reduce_inner_kernel(const T* x, T* out, typename Reducer<Op, T>::Acc* partial, Geometry<2> kept,
                                    Geometry<1> red, Index outputs, Index count, Index splits) {
  const Index warps_per_block = blockDim.x / 32;
  const Index warp = static_cast<Index>(blockIdx.x) * warps_per_block + threadIdx.x / 32;
  const Index lane = threadIdx.x % 32;
  const Index total = outputs * splits;
  const Index step = static_cast<Index>(gridDim.x) * warps_per_block;
  for (Index w = warp; w < total; w += step) {
    const Index o = w / splits, split = w % splits;
    const Index chunk = (count + splits - 1) / splits;
    const Index begin = split * chunk, end = begin + chunk < count ? begin + chunk : count;
    int64_t off[2];
    offsets_of<2, Index>(kept, o, off);
    auto acc = reduce_range<Op, T, Index>(x, off[1], red, begin + lane, end, 32);
    acc = warp_merge<Op>(acc);
    if (lane == 0) {
      if (splits == 1)
        out[off[0]] = static_cast<T>(acc);
      else
        partial[split * outputs + o] = acc;
    }
  }
}

// Outer reductions: one thread per (output, split), walking its chunk of the reduced elements.
template <ReduceOp Op, typename T, typename Index>
__global__ void reduce_outer_kernel(const T* x, T* out, typename Reducer<Op, T>::Acc* partial, Geometry<2> kept,
                                    Geometry<1> red, Index outputs, Index count, Index splits) {
  const Index total = outputs * splits;
  const Index step = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index t = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; t < total; t += step) {
    const Index split = t / outputs, o = t % outputs;  // neighbouring threads: neighbouring outputs
    const Index chunk = (count + splits - 1) / splits;
    const Index begin = split * chunk, end = begin + chunk < count ? begin + chunk : count;
    int64_t off[2];
    offsets_of<2, Index>(kept, o, off);
    const auto acc = reduce_range<Op, T, Index>(x, off[1], red, begin, end, 1);
    if (splits == 1)
      out[off[0]] = static_cast<T>(acc);
    else
      partial[split * outputs + o] = acc;
  }
}

// Merges the splits' partial results of each output, in split order.
template <ReduceOp Op, typename T, typename Index>
__global__ void reduce_finish_kernel(const typename Reducer<Op, T>::Acc* partial, T* out, Geometry<2> kept,
                                     Index outputs, Index splits) {
  using R = Reducer<Op, T>;
  const Index step = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index o = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; o < outputs; o += step) {
    typename R::Acc acc = R::init();
    for (Index s = 0; s < splits; ++s) acc = R::merge(acc, partial[s * outputs + o]);
    int64_t off[2];
    offsets_of<2, Index>(kept, o, off);
    out[off[0]] = static_cast<T>(acc);
  }
}

// Enough (output, split) work items to fill the device several times over.
constexpr int64_t kTargetWorkers = 1 << 17;

template <ReduceOp Op, typename T, typename Index>
void reduce_typed(const Tensor& x, const std::vector<int>& dims, const Tensor& out) {
  using Acc = typename Reducer<Op, T>::Acc;
  Shape kept_shape, red_shape;
  Strides kept_x, kept_out, red_x;
  size_t next = 0;
  for (size_t d = 0; d < x.shape().size(); ++d) {
    if (next < dims.size() && dims[next] == static_cast<int>(d)) {
      ++next;
      red_shape.push_back(x.shape()[d]);
      red_x.push_back(x.strides()[d]);
    } else {
      kept_shape.push_back(x.shape()[d]);
      kept_x.push_back(x.strides()[d]);
      kept_out.push_back(out.strides()[d]);
    }
  }
  const char* name = reduce_op_name(Op);
  const Geometry<2> kept = make_geometry<2>(name, kept_shape, {&kept_out, &kept_x});
  const Geometry<1> red = make_geometry<1>(name, red_shape, {&red_x});
  const int64_t outputs = numel_of(kept_shape), count = numel_of(red_shape);
  const int64_t red_inner = red.ndim == 0 ? 0 : std::abs(red.strides[0][red.ndim - 1]);
  const int64_t kept_inner = kept.ndim == 0 ? 0 : std::abs(kept.strides[1][kept.ndim - 1]);
  const bool inner = outputs == 1 || (red_inner != 0 && red_inner <= kept_inner);
  cudaStream_t stream = stream_of(out);

  // Split long reductions when there are too few outputs to keep the device busy.
  int64_t splits = 1;
  if (inner) {
    const int64_t warps = outputs;
    if (warps < kTargetWorkers / 32 && count > 4096)
      splits = std::min<int64_t>((count + 4095) / 4096, (kTargetWorkers / 32 + warps - 1) / warps);
  } else if (outputs < kTargetWorkers && count > 64) {
    splits = std::min<int64_t>((count + 63) / 64, (kTargetWorkers + outputs - 1) / outputs);
  }
  Tensor partial;
  if (splits > 1) partial = Tensor::empty({splits, outputs}, dtype_of<Acc>(), out.device());
  Acc* partial_ptr = splits > 1 ? static_cast<Acc*>(partial.raw_data()) : nullptr;

  const Index n_out = static_cast<Index>(outputs), n_red = static_cast<Index>(count),
              n_split = static_cast<Index>(splits);
  if (inner) {
    reduce_inner_kernel<Op, T, Index><<<blocks_for(outputs * splits * 32), kThreads, 0, stream>>>(
        ptr<const T>(x), ptr<T>(out), partial_ptr, kept, red, n_out, n_red, n_split);
  } else {
    reduce_outer_kernel<Op, T, Index><<<blocks_for(outputs * splits), kThreads, 0, stream>>>(
        ptr<const T>(x), ptr<T>(out), partial_ptr, kept, red, n_out, n_red, n_split);
  }
  MG_CUDA_CHECK_LAUNCH(name);
  if (splits > 1) {
    reduce_finish_kernel<Op, T, Index>
        <<<blocks_for(outputs), kThreads, 0, stream>>>(partial_ptr, ptr<T>(out), kept, n_out, n_split);
    MG_CUDA_CHECK_LAUNCH(name);
  }
}

// ---------------------------------------------------------------- arg-reductions

template <ReduceOp Op, typename T>
struct ArgBest {
  T value;
  int64_t index;  // -1: no element seen

  // Whether (v, i) should replace this: the better value, NaN beating everything, and the
  // first index among equals (the CPU's sequential scan keeps the first).
  __device__ bool beaten_by(T v, int64_t i) const {
    if (i < 0) return false;
    if (index < 0) return true;
    const bool v_nan = is_nan(v), best_nan = is_nan(value);
    if (best_nan || v_nan) return v_nan && (!best_nan || i < index);
    if (v == value) return i < index;
    if constexpr (Op == ReduceOp::Max)
      return v > value;
    else
      return v < value;
  }
};

// One warp per output row of len elements, element i at x + base + i * step.
template <ReduceOp Op, typename T>
__global__ void arg_reduce_kernel(const T* x, T* values, int64_t* indices, Geometry<3> kept, int64_t outputs,
                                  int64_t len, int64_t step) {
  const int64_t warps_per_block = blockDim.x / 32;
  const int64_t lane = threadIdx.x % 32;
  for (int64_t o = int64_t{blockIdx.x} * warps_per_block + threadIdx.x / 32; o < outputs;
       o += int64_t{gridDim.x} * warps_per_block) {
    int64_t off[3];
    offsets_of<3, int64_t>(kept, o, off);
    ArgBest<Op, T> best{T(0), -1};
    for (int64_t i = lane; i < len; i += 32) {
      const T v = x[off[2] + i * step];
      if (best.beaten_by(v, i)) best = {v, i};
    }
#pragma unroll
    for (int delta = 16; delta > 0; delta /= 2) {
      const T v = shuffle_down(best.value, delta);
      const int64_t i = shuffle_down(best.index, delta);
      if (best.beaten_by(v, i)) best = {v, i};
    }
    if (lane == 0) {
      values[off[0]] = best.value;
      indices[off[1]] = best.index;
    }
  }
}

template <ReduceOp Op, typename T>
void arg_reduce_typed(const Tensor& x, int dim, const Tensor& values, const Tensor& indices) {
  Shape kept_shape;
  Strides kept_v, kept_i, kept_x;
  for (int d = 0; d < static_cast<int>(x.dim()); ++d) {
    if (d == dim) continue;
    kept_shape.push_back(x.shape()[d]);
    kept_v.push_back(values.strides()[d]);
    kept_i.push_back(indices.strides()[d]);
    kept_x.push_back(x.strides()[d]);
  }
  const char* name = Op == ReduceOp::Max ? "argmax" : "argmin";
  const Geometry<3> kept = make_geometry<3>(name, kept_shape, {&kept_v, &kept_i, &kept_x});
  const int64_t outputs = numel_of(kept_shape);
  arg_reduce_kernel<Op, T><<<blocks_for(outputs * 32), kThreads, 0, stream_of(values)>>>(
      ptr<const T>(x), ptr<T>(values), ptr<int64_t>(indices), kept, outputs, x.shape()[dim], x.strides()[dim]);
  MG_CUDA_CHECK_LAUNCH(name);
}

template <ReduceOp Op, typename T>
void reduce_dispatch_index(const Tensor& x, const std::vector<int>& dims, const Tensor& out) {
  // Work items (outputs * splits * 32 lanes) stay below 2^32 with a 32-bit index too.
  if (fits_uint32(x.numel()) && fits_uint32(out.numel() * 64))
    reduce_typed<Op, T, uint32_t>(x, dims, out);
  else
    reduce_typed<Op, T, int64_t>(x, dims, out);
}

}  // namespace

void reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims, const Tensor& out) {
  dispatch_dtype(x.dtype(), [&]<typename T>() {
    switch (op) {
      case ReduceOp::Sum:
        return reduce_dispatch_index<ReduceOp::Sum, T>(x, dims, out);
      case ReduceOp::Max:
        return reduce_dispatch_index<ReduceOp::Max, T>(x, dims, out);
      case ReduceOp::Min:
        return reduce_dispatch_index<ReduceOp::Min, T>(x, dims, out);
      default:
        MG_FAIL("reduce: unknown op ", static_cast<int>(op));
    }
  });
}

void arg_reduce(ReduceOp op, const Tensor& x, int dim, const Tensor& values, const Tensor& indices) {
  dispatch_dtype(x.dtype(), [&]<typename T>() {
    switch (op) {
      case ReduceOp::Max:
        return arg_reduce_typed<ReduceOp::Max, T>(x, dim, values, indices);
      case ReduceOp::Min:
        return arg_reduce_typed<ReduceOp::Min, T>(x, dim, values, indices);
      default:
        MG_FAIL("arg_reduce: only max and min, got ", reduce_op_name(op));
    }
  });
}

}  // namespace mg::cuda
