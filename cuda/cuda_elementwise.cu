// Elementwise kernels: copy within a device (with dtype conversion), fill, arange, unary, binary,
// where. Each has a dense path, taken when every operand is contiguous with the output's shape,
// which moves 16 bytes per load and store where the pointers allow, and a strided path over the
// merged geometry (cuda_geometry.cuh) for transposed, sliced and broadcast operands.
#include <cmath>
#include <type_traits>
#include <utility>

#include "../tensor/cpu/convert.h"
#include "cuda_geometry.cuh"
#include "cuda_kernels.h"
#include "cuda_launch.cuh"
#include "cuda_math.cuh"

namespace mg::cuda {
namespace {

// ---------------------------------------------------------------- element functions

template <UnaryOp Op>
constexpr bool integer_unary() {
  return Op == UnaryOp::Neg || Op == UnaryOp::Abs || Op == UnaryOp::Sign || Op == UnaryOp::Square;
}

template <UnaryOp Op, typename T>
__device__ __forceinline__ T unary_fn(T x) {
  if constexpr (std::is_integral_v<T>) {
    const uint64_t u = static_cast<uint64_t>(x);
    if constexpr (Op == UnaryOp::Neg) return static_cast<T>(uint64_t{0} - u);
    if constexpr (Op == UnaryOp::Abs) return x < 0 ? static_cast<T>(uint64_t{0} - u) : x;
    if constexpr (Op == UnaryOp::Sign) return static_cast<T>((x > 0) - (x < 0));
    if constexpr (Op == UnaryOp::Square) return static_cast<T>(u * u);
    return x;
  } else {
    if constexpr (Op == UnaryOp::Neg) return -x;
    if constexpr (Op == UnaryOp::Exp) return exp(x);
    if constexpr (Op == UnaryOp::Log) return log(x);
    if constexpr (Op == UnaryOp::Sqrt) return sqrt(x);
    if constexpr (Op == UnaryOp::Rsqrt) return T(1) / sqrt(x);
    if constexpr (Op == UnaryOp::Abs) return fabs(x);
    if constexpr (Op == UnaryOp::Sin) return sin(x);
    if constexpr (Op == UnaryOp::Cos) return cos(x);
    if constexpr (Op == UnaryOp::Tanh) return tanh(x);
    if constexpr (Op == UnaryOp::Sigmoid) {
      if (x >= T(0)) return T(1) / (T(1) + exp(-x));  // never exp of a large positive number
      const T e = exp(x);
      return e / (T(1) + e);
    }
    if constexpr (Op == UnaryOp::Relu) return x < T(0) ? T(0) : x;  // NaN passes through
    if constexpr (Op == UnaryOp::GeluTanh) {
      const T k = T(0.7978845608028654);  // sqrt(2 / pi)
      return T(0.5) * x * (T(1) + tanh(k * (x + T(0.044715) * x * x * x)));
    }
    if constexpr (Op == UnaryOp::GeluErf) return T(0.5) * x * (T(1) + erf(x * T(0.7071067811865476)));
    if constexpr (Op == UnaryOp::Softplus) return (x > T(0) ? x : T(0)) + log1p(exp(-fabs(x)));
    if constexpr (Op == UnaryOp::Erf) return erf(x);
    if constexpr (Op == UnaryOp::Sign) return isnan(x) ? x : T((x > T(0)) - (x < T(0)));
    if constexpr (Op == UnaryOp::Reciprocal) return T(1) / x;
    if constexpr (Op == UnaryOp::Square) return x * x;
    return x;
  }
}

template <BinaryOp Op, typename T>
__device__ __forceinline__ T binary_fn(T a, T b) {
  if constexpr (Op == BinaryOp::Add || Op == BinaryOp::Sub || Op == BinaryOp::Mul) {
    if constexpr (std::is_integral_v<T>) {  // wrap around like the CPU
      const uint64_t ua = static_cast<uint64_t>(a), ub = static_cast<uint64_t>(b);
      if constexpr (Op == BinaryOp::Add) return static_cast<T>(ua + ub);
      if constexpr (Op == BinaryOp::Sub) return static_cast<T>(ua - ub);
      return static_cast<T>(ua * ub);
    } else {
      if constexpr (Op == BinaryOp::Add) return a + b;
      if constexpr (Op == BinaryOp::Sub) return a - b;
      return a * b;
    }
  }
  if constexpr (Op == BinaryOp::Div) return a / b;
  if constexpr (Op == BinaryOp::Pow) {
    if constexpr (std::is_floating_point_v<T>) return pow(a, b);
    return T(0);  // rejected by tensor/kernels.cpp
  }
  if constexpr (Op == BinaryOp::Maximum || Op == BinaryOp::Minimum) {
    if constexpr (std::is_floating_point_v<T>) {  // NaN propagates, like torch.maximum
      if (isnan(a)) return a;
      if (isnan(b)) return b;
    }
    if constexpr (Op == BinaryOp::Maximum) return a > b ? a : b;
    return a < b ? a : b;
  }
  if constexpr (Op == BinaryOp::MulPositiveMask) return b > T(0) ? a : a * T(0);
  if constexpr (Op == BinaryOp::Eq) return T(a == b);
  if constexpr (Op == BinaryOp::Ne) return T(a != b);
  if constexpr (Op == BinaryOp::Lt) return T(a < b);
  if constexpr (Op == BinaryOp::Le) return T(a <= b);
  if constexpr (Op == BinaryOp::Gt) return T(a > b);
  if constexpr (Op == BinaryOp::Ge) return T(a >= b);
  return T(0);
}

// ---------------------------------------------------------------- generic kernels

// V elements of T in one 16-byte load or store.
template <typename T>
struct alignas(16) Pack {
  static constexpr int kCount = 16 / sizeof(T);
  T v[kCount];
};

template <typename A, typename B>
struct PackPair {
  Pack<A> first;
  Pack<B> second;
};

template <typename A>
__device__ __forceinline__ Pack<A> load_one(int64_t p, const A* a) {
  return reinterpret_cast<const Pack<A>*>(a)[p];
}

template <typename A, typename B>
__device__ __forceinline__ PackPair<A, B> load_two(int64_t p, const A* a, const B* b) {
  return {reinterpret_cast<const Pack<A>*>(a)[p], reinterpret_cast<const Pack<B>*>(b)[p]};
}

// out[i] = f(in[i]...) over n contiguous elements, one element per step.
template <typename Out, typename F, typename... In>
__global__ void dense_kernel(int64_t n, F f, Out* out, const In*... in) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = f(in[i]...);
}

// The same with 16-byte loads and stores (every pointer 16-byte aligned, every type of Out's
// size), for up to two inputs; the tail past the last whole pack goes one element at a time.
template <typename Out, typename F, typename... In>
__global__ void dense_vectorized_kernel(int64_t n, F f, Out* out, const In*... in) {
  static_assert(sizeof...(In) <= 2 && ((sizeof(In) == sizeof(Out)) && ...));
  constexpr int V = Pack<Out>::kCount;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t first = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const int64_t packs = n / V;
  for (int64_t p = first; p < packs; p += stride) {
    Pack<Out> r;
    if constexpr (sizeof...(In) == 0) {
#pragma unroll
      for (int j = 0; j < V; ++j) r.v[j] = f();
    } else if constexpr (sizeof...(In) == 1) {
      const auto a = load_one(p, in...);
#pragma unroll
      for (int j = 0; j < V; ++j) r.v[j] = f(a.v[j]);
    } else {
      const auto loaded = load_two(p, in...);
#pragma unroll
      for (int j = 0; j < V; ++j) r.v[j] = f(loaded.first.v[j], loaded.second.v[j]);
    }
    reinterpret_cast<Pack<Out>*>(out)[p] = r;
  }
  for (int64_t i = packs * V + first; i < n; i += stride) out[i] = f(in[i]...);
}

template <size_t... K, typename F, typename Out, typename... In>
__device__ __forceinline__ void apply_at(std::index_sequence<K...>, const F& f, const int64_t* off, Out* out,
                                         const In*... in) {
  out[off[0]] = f(in[off[K + 1]]...);
}

// out[off0] = f(in_k[off_k]...) over the geometry's elements.
template <typename Index, int N, typename Out, typename F, typename... In>
__global__ void strided_kernel(Geometry<N> g, Index n, F f, Out* out, const In*... in) {
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[N];
    offsets_of<N, Index>(g, i, off);
    apply_at(std::index_sequence_for<In...>{}, f, off, out, in...);
  }
}

template <typename T>
bool aligned16(const T* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Runs f elementwise into out from ins, all of out's shape, picking the dense or strided kernel.
template <typename F, typename Out, typename... In>
void launch_map(const char* op, F f, const Tensor& out, const std::pair<const Tensor*, const In*>&... ins) {
  const int64_t n = out.numel();
  if (n == 0) return;
  cudaStream_t stream = stream_of(out);
  Out* o = ptr<Out>(out);
  const bool dense = out.is_contiguous() && (ins.first->is_contiguous() && ...);
  if (dense) {
    constexpr bool packable = sizeof...(In) <= 2 && ((sizeof(In) == sizeof(Out)) && ...);
    if constexpr (packable) {
      if (aligned16(o) && (aligned16(ins.second) && ...)) {
        const unsigned blocks = blocks_for(n, Pack<Out>::kCount);
        dense_vectorized_kernel<Out><<<blocks, kThreads, 0, stream>>>(n, f, o, ins.second...);
        MG_CUDA_CHECK_LAUNCH(op);
        return;
      }
    }
    dense_kernel<Out><<<blocks_for(n), kThreads, 0, stream>>>(n, f, o, ins.second...);
    MG_CUDA_CHECK_LAUNCH(op);
    return;
  }
  constexpr int N = 1 + sizeof...(In);
  const Geometry<N> g = make_geometry<N>(op, out.shape(), {&out.strides(), &ins.first->strides()...});
  const unsigned blocks = blocks_for(n);
  if (fits_uint32(n))
    strided_kernel<uint32_t, N><<<blocks, kThreads, 0, stream>>>(g, static_cast<uint32_t>(n), f, o, ins.second...);
  else
    strided_kernel<int64_t, N><<<blocks, kThreads, 0, stream>>>(g, n, f, o, ins.second...);
  MG_CUDA_CHECK_LAUNCH(op);
}

template <typename T>
std::pair<const Tensor*, const T*> in(const Tensor& t) {
  return {&t, static_cast<const T*>(t.raw_data())};
}

// ---------------------------------------------------------------- functors

template <typename S, typename D>
struct ConvertFn {
  __device__ D operator()(S v) const { return convert<D>(v); }
};

template <typename T>
struct ConstantFn {
  T value;
  __device__ T operator()() const { return value; }
};

template <UnaryOp Op, typename T>
struct UnaryFn {
  __device__ T operator()(T x) const { return unary_fn<Op>(x); }
};

template <BinaryOp Op, typename T>
struct BinaryFn {
  __device__ T operator()(T a, T b) const { return binary_fn<Op>(a, b); }
};

template <typename C, typename T>
struct WhereFn {
  __device__ T operator()(C c, T a, T b) const { return c != C(0) ? a : b; }
};

template <typename T>
__global__ void arange_kernel(T* out, int64_t n, double start, double step) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = convert<T>(start + static_cast<double>(i) * step);
}

template <UnaryOp Op, typename T>
void unary_typed(const Tensor& x, const Tensor& out) {
  if constexpr (std::is_integral_v<T> && !integer_unary<Op>())
    MG_FAIL(unary_op_name(Op), ": dtype int64 is not supported");
  else
    launch_map<UnaryFn<Op, T>, T>(unary_op_name(Op), UnaryFn<Op, T>{}, out, in<T>(x));
}

template <BinaryOp Op, typename T>
void binary_typed(const Tensor& a, const Tensor& b, const Tensor& out) {
  if constexpr (std::is_integral_v<T> && (Op == BinaryOp::Div || Op == BinaryOp::Pow))
    MG_FAIL(binary_op_name(Op), ": dtype int64 is not supported");
  else
    launch_map<BinaryFn<Op, T>, T>(binary_op_name(Op), BinaryFn<Op, T>{}, out, in<T>(a), in<T>(b));
}

// The run-time op picks one of the compile-time instantiations.
template <typename T, size_t... I>
void unary_dispatch(UnaryOp op, const Tensor& x, const Tensor& out, std::index_sequence<I...>) {
  const bool found =
      ((op == static_cast<UnaryOp>(I) && (unary_typed<static_cast<UnaryOp>(I), T>(x, out), true)) || ...);
  MG_CHECK(found, "unary: unknown op ", static_cast<int>(op));
}

template <typename T, size_t... I>
void binary_dispatch(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, std::index_sequence<I...>) {
  const bool found =
      ((op == static_cast<BinaryOp>(I) && (binary_typed<static_cast<BinaryOp>(I), T>(a, b, out), true)) || ...);
  MG_CHECK(found, "binary: unknown op ", static_cast<int>(op));
}

}  // namespace

void copy_same_device(const Tensor& src, const Tensor& dst) {
  dispatch_dtype(src.dtype(), [&]<typename S>() {
    dispatch_dtype(dst.dtype(), [&]<typename D>() {
      if constexpr (std::is_same_v<S, D>) {
        if (src.is_contiguous() && dst.is_contiguous()) {
          MG_CUDA_CHECK("copy", cudaMemcpyAsync(dst.raw_data(), src.raw_data(), dst.numel() * sizeof(D),
                                                cudaMemcpyDeviceToDevice, stream_of(dst)));
          return;
        }
      }
      launch_map<ConvertFn<S, D>, D>("copy", ConvertFn<S, D>{}, dst, in<S>(src));
    });
  });
}

void fill(const Tensor& dst, double value) {
  dispatch_dtype(dst.dtype(), [&]<typename T>() {
    launch_map<ConstantFn<T>, T>("fill", ConstantFn<T>{cpu::convert<T>(value)}, dst);
  });
}

void arange(const Tensor& dst, double start, double step) {
  dispatch_dtype(dst.dtype(), [&]<typename T>() {
    const int64_t n = dst.numel();
    arange_kernel<T><<<blocks_for(n), kThreads, 0, stream_of(dst)>>>(ptr<T>(dst), n, start, step);
    MG_CUDA_CHECK_LAUNCH("arange");
  });
}

void unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  dispatch_dtype(out.dtype(), [&]<typename T>() {
    unary_dispatch<T>(op, x, out, std::make_index_sequence<static_cast<size_t>(UnaryOp::Count)>{});
  });
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_dtype(out.dtype(), [&]<typename T>() {
    binary_dispatch<T>(op, a, b, out, std::make_index_sequence<static_cast<size_t>(BinaryOp::Count)>{});
  });
}

void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_dtype(cond.dtype(), [&]<typename C>() {
    dispatch_dtype(out.dtype(), [&]<typename T>() {
      launch_map<WhereFn<C, T>, T>("where", WhereFn<C, T>{}, out, in<C>(cond), in<T>(a), in<T>(b));
    });
  });
}

}  // namespace mg::cuda
