// Elementwise CPU kernels: copy (with dtype conversion), fill, arange, unary, binary, where.
// Every one is a strided loop (strided_loop.h) whose inner run has a dense fast path that the
// compiler vectorises.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>

#include "convert.h"
#include "cpu_kernels.h"
#include "matrix_transpose.h"
#include "parallel.h"
#include "simd.h"
#include "streaming_store.h"
#include "strided_loop.h"
#include "vec_math.h"

namespace mg::cpu {
namespace {

template <typename T>
T* at(char* p, int64_t byte_offset) {
  return reinterpret_cast<T*>(p + byte_offset);
}

// ---- copy, fill, arange ----

// A copy whose two innermost dims are swapped between src and dst (a transposed view made
// contiguous, attention heads split or merged): each of those matrices through transpose_matrix,
// instead of a strided loop that moved about one element per cycle (W-tf: 3-5% of its step).
template <typename T>
bool copy_transposed(const StridedPlan<2>& plan, char* dst, char* src) {
  constexpr int64_t e = sizeof(T);
  const std::size_t nd = plan.sizes.size();
  if (nd < 2) return false;
  const std::array<int64_t, 2>& inner = plan.strides[nd - 1];  // dst e, src a row stride
  const std::array<int64_t, 2>& outer = plan.strides[nd - 2];  // dst a row stride, src e
  const int64_t rows = plan.sizes[nd - 1], cols = plan.sizes[nd - 2];
  if (inner[0] != e || outer[1] != e || inner[1] <= 0 || outer[0] <= 0 || inner[1] % e != 0 || outer[0] % e != 0 ||
      rows * cols < 64)
    return false;
  StridedPlan<2> matrices;
  for (std::size_t d = 0; d + 2 < nd; ++d) {
    matrices.sizes.push_back(plan.sizes[d]);
    matrices.strides.push_back(plan.strides[d]);
  }
  matrices.numel = plan.numel / (rows * cols);
  parallel_for(matrices.numel, rows * cols, [&](int64_t begin, int64_t end) {
    run_range(matrices, {dst, src}, begin, end,
              [&](std::array<char*, 2> p, const std::array<int64_t, 2>& s, int64_t n) {
                for (int64_t i = 0; i < n; ++i)
                  transpose_matrix(reinterpret_cast<const T*>(p[1] + i * s[1]), inner[1] / e, rows, cols,
                                   reinterpret_cast<T*>(p[0] + i * s[0]), outer[0] / e);
              });
  });
  return true;
}

template <typename S, typename D>
void copy_typed(const Tensor& src, const Tensor& dst) {
  if constexpr (std::is_same_v<S, D>) {
    if (src.is_contiguous() && dst.is_contiguous()) {
      const char* from = bytes(src);
      char* to = bytes(dst);
      const int64_t n = dst.numel();
      const bool streaming = n * static_cast<int64_t>(sizeof(D)) >= kStreamingStoreBytes;
      parallel_for(n, 1, [&](int64_t begin, int64_t end) {
        const int64_t len = (end - begin) * static_cast<int64_t>(sizeof(D));
        if (streaming) {
          stream_copy(to + begin * sizeof(D), from + begin * sizeof(D), len);
          streaming_store_fence();
        } else {
          std::memcpy(to + begin * sizeof(D), from + begin * sizeof(D), static_cast<size_t>(len));
        }
      });
      return;
    }
  }
  const auto plan = make_plan<2>(dst.shape(), {&dst.strides(), &src.strides()}, {sizeof(D), sizeof(S)});
  if constexpr (std::is_same_v<S, D>) {
    if (copy_transposed<D>(plan, bytes(dst), bytes(src))) return;
  }
  run_to_output(plan, {bytes(dst), bytes(src)}, [](std::array<char*, 2> p, const std::array<int64_t, 2>& s, int64_t n) {
    if (s[0] == sizeof(D) && s[1] == sizeof(S)) {
      D* out = at<D>(p[0], 0);
      const S* in = at<S>(p[1], 0);
      for (int64_t i = 0; i < n; ++i) out[i] = convert<D>(in[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) *at<D>(p[0], i * s[0]) = convert<D>(*at<S>(p[1], i * s[1]));
    }
  });
}

}  // namespace

void copy(const Tensor& src, const Tensor& dst) {
  dispatch_dtype(src.dtype(), [&]<typename S>() {
    dispatch_dtype(dst.dtype(), [&]<typename D>() { copy_typed<S, D>(src, dst); });
  });
}

void fill(const Tensor& dst, double value) {
  dispatch_dtype(dst.dtype(), [&]<typename T>() {
    const T v = convert<T>(value);
    const auto plan = make_plan<1>(dst.shape(), {&dst.strides()}, {sizeof(T)});
    run_to_output(plan, {bytes(dst)}, [v](std::array<char*, 1> p, const std::array<int64_t, 1>& s, int64_t n) {
      if (s[0] == sizeof(T)) {
        T* out = at<T>(p[0], 0);
        for (int64_t i = 0; i < n; ++i) out[i] = v;
      } else {
        for (int64_t i = 0; i < n; ++i) *at<T>(p[0], i * s[0]) = v;
      }
    });
  });
}

void arange(const Tensor& dst, double start, double step) {
  dispatch_dtype(dst.dtype(), [&]<typename T>() {
    T* out = dst.data_ptr<T>();
    parallel_for(dst.numel(), 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) out[i] = convert<T>(start + static_cast<double>(i) * step);
    });
  });
}

// ---- unary ----
namespace {

constexpr bool integer_unary(UnaryOp op) {
  return op == UnaryOp::Neg || op == UnaryOp::Abs || op == UnaryOp::Sign || op == UnaryOp::Square;
}

// float32 ops with a vectorised form in vec_math.h. Strided runs use its scalar form: the same
// formula, so a value depends on the layout it came in only in its last bit or two (the vector
// clones fuse multiply-adds; this file's scalar loops, built for the baseline ISA, do not).
constexpr bool has_vec_f32(UnaryOp op) {
  return op == UnaryOp::Exp || op == UnaryOp::Log || op == UnaryOp::Sigmoid || op == UnaryOp::Tanh ||
         op == UnaryOp::GeluTanh || op == UnaryOp::GeluErf || op == UnaryOp::Softplus || op == UnaryOp::Erf ||
         op == UnaryOp::Sin || op == UnaryOp::Cos || op == UnaryOp::Sign;
}

template <UnaryOp Op>
void unary_dense_f32(const float* x, float* y, int64_t n) {
  if constexpr (Op == UnaryOp::Exp) vec::exp_f32(x, y, n);
  if constexpr (Op == UnaryOp::Log) vec::log_f32(x, y, n);
  if constexpr (Op == UnaryOp::Softplus) vec::softplus_f32(x, y, n);
  if constexpr (Op == UnaryOp::Erf) vec::erf_f32(x, y, n);
  if constexpr (Op == UnaryOp::Sin) vec::sin_f32(x, y, n);
  if constexpr (Op == UnaryOp::Cos) vec::cos_f32(x, y, n);
  if constexpr (Op == UnaryOp::Sign) vec::sign_f32(x, y, n);
  if constexpr (Op == UnaryOp::Sigmoid) vec::sigmoid_f32(x, y, n);
  if constexpr (Op == UnaryOp::Tanh) vec::tanh_f32(x, y, n);
  if constexpr (Op == UnaryOp::GeluTanh) vec::gelu_tanh_f32(x, y, n);
  if constexpr (Op == UnaryOp::GeluErf) vec::gelu_erf_f32(x, y, n);
}

template <UnaryOp Op, typename T>
inline T unary_fn(T x) {
  if constexpr (std::is_integral_v<T>) {
    // Two's-complement wrap-around instead of signed-overflow UB (e.g. -INT64_MIN).
    const uint64_t u = static_cast<uint64_t>(x);
    if constexpr (Op == UnaryOp::Neg) return static_cast<T>(uint64_t{0} - u);
    if constexpr (Op == UnaryOp::Abs) return x < 0 ? static_cast<T>(uint64_t{0} - u) : x;
    if constexpr (Op == UnaryOp::Sign) return static_cast<T>((x > 0) - (x < 0));
    if constexpr (Op == UnaryOp::Square) return static_cast<T>(u * u);
    return x;
  } else if constexpr (std::is_same_v<T, float> && has_vec_f32(Op)) {
    if constexpr (Op == UnaryOp::Exp) return vec::exp_f32(x);
    if constexpr (Op == UnaryOp::Log) return vec::log_f32(x);
    if constexpr (Op == UnaryOp::Softplus) return vec::softplus_f32(x);
    if constexpr (Op == UnaryOp::Erf) return vec::erf_f32(x);
    if constexpr (Op == UnaryOp::Sin) return vec::sin_f32(x);
    if constexpr (Op == UnaryOp::Cos) return vec::cos_f32(x);
    if constexpr (Op == UnaryOp::Sign) return vec::sign_f32(x);
    if constexpr (Op == UnaryOp::Sigmoid) return vec::sigmoid_f32(x);
    if constexpr (Op == UnaryOp::Tanh) return vec::tanh_f32(x);
    if constexpr (Op == UnaryOp::GeluTanh) return vec::gelu_tanh_f32(x);
    if constexpr (Op == UnaryOp::GeluErf) return vec::gelu_erf_f32(x);
    return x;
  } else {
    if constexpr (Op == UnaryOp::Neg) return -x;
    if constexpr (Op == UnaryOp::Exp) return std::exp(x);
    if constexpr (Op == UnaryOp::Log) return std::log(x);
    if constexpr (Op == UnaryOp::Sqrt) return std::sqrt(x);
    if constexpr (Op == UnaryOp::Rsqrt) return T(1) / std::sqrt(x);
    if constexpr (Op == UnaryOp::Abs) return std::abs(x);
    if constexpr (Op == UnaryOp::Sin) return std::sin(x);
    if constexpr (Op == UnaryOp::Cos) return std::cos(x);
    if constexpr (Op == UnaryOp::Tanh) return std::tanh(x);
    if constexpr (Op == UnaryOp::Sigmoid) {
      // Never exp of a large positive number.
      if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
      const T e = std::exp(x);
      return e / (T(1) + e);
    }
    if constexpr (Op == UnaryOp::Relu) return x < T(0) ? T(0) : x;  // NaN passes through
    if constexpr (Op == UnaryOp::GeluTanh) {
      const T k = T(0.7978845608028654);  // sqrt(2 / pi)
      return T(0.5) * x * (T(1) + std::tanh(k * (x + T(0.044715) * x * x * x)));
    }
    if constexpr (Op == UnaryOp::GeluErf) return T(0.5) * x * (T(1) + std::erf(x * T(0.7071067811865476)));
    if constexpr (Op == UnaryOp::Softplus) return std::max(x, T(0)) + std::log1p(std::exp(-std::abs(x)));
    if constexpr (Op == UnaryOp::Erf) return std::erf(x);
    if constexpr (Op == UnaryOp::Sign) return std::isnan(x) ? x : T((x > T(0)) - (x < T(0)));
    if constexpr (Op == UnaryOp::Reciprocal) return T(1) / x;
    if constexpr (Op == UnaryOp::Square) return x * x;
    return x;
  }
}

template <UnaryOp Op, typename T>
void unary_typed(const Tensor& x, const Tensor& out) {
  if constexpr (std::is_integral_v<T> && !integer_unary(Op)) {
    MG_FAIL(unary_op_name(Op), ": dtype int64 is not supported");
  } else {
    const auto plan = make_plan<2>(out.shape(), {&out.strides(), &x.strides()}, {sizeof(T), sizeof(T)});
    run_to_output(plan, {bytes(out), bytes(x)}, [](std::array<char*, 2> p, const std::array<int64_t, 2>& s, int64_t n) {
      if (s[0] == sizeof(T) && s[1] == sizeof(T)) {
        T* o = at<T>(p[0], 0);
        const T* a = at<T>(p[1], 0);
        if constexpr (std::is_same_v<T, float> && has_vec_f32(Op)) {
          unary_dense_f32<Op>(a, o, n);
        } else {
          for (int64_t i = 0; i < n; ++i) o[i] = unary_fn<Op>(a[i]);
        }
      } else {
        for (int64_t i = 0; i < n; ++i) *at<T>(p[0], i * s[0]) = unary_fn<Op>(*at<T>(p[1], i * s[1]));
      }
    });
  }
}

template <typename T, size_t... I>
void unary_dispatch(UnaryOp op, const Tensor& x, const Tensor& out, std::index_sequence<I...>) {
  const bool found = ((op == static_cast<UnaryOp>(I) ? (unary_typed<static_cast<UnaryOp>(I), T>(x, out), true)
                                                       : false) ||
                      ...);
  MG_CHECK(found, "unary: unknown op ", static_cast<int>(op));
}

}  // namespace

void unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  dispatch_dtype(out.dtype(), [&]<typename T>() {
    unary_dispatch<T>(op, x, out, std::make_index_sequence<static_cast<size_t>(UnaryOp::Count)>{});
  });
}

// ---- binary ----
namespace {

template <BinaryOp Op, typename T>
inline T binary_fn(T a, T b) {
  if constexpr (Op == BinaryOp::Add || Op == BinaryOp::Sub || Op == BinaryOp::Mul) {
    if constexpr (std::is_integral_v<T>) {  // wrap around instead of signed-overflow UB
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
    if constexpr (std::is_floating_point_v<T>) return std::pow(a, b);
    return T(0);  // rejected by kernels.cpp
  }
  if constexpr (Op == BinaryOp::Maximum || Op == BinaryOp::Minimum) {
    if constexpr (std::is_floating_point_v<T>) {  // NaN propagates, like torch.maximum
      if (std::isnan(a)) return a;
      if (std::isnan(b)) return b;
    }
    if constexpr (Op == BinaryOp::Maximum) return a > b ? a : b;
    return a < b ? a : b;
  }
  if constexpr (Op == BinaryOp::MulPositiveMask) return b > T(0) ? a : a * T(0);  // a * 0: NaN stays NaN
  if constexpr (Op == BinaryOp::Eq) return T(a == b);
  if constexpr (Op == BinaryOp::Ne) return T(a != b);
  if constexpr (Op == BinaryOp::Lt) return T(a < b);
  if constexpr (Op == BinaryOp::Le) return T(a <= b);
  if constexpr (Op == BinaryOp::Gt) return T(a > b);
  if constexpr (Op == BinaryOp::Ge) return T(a >= b);
  return T(0);
}

// The arithmetic ops' dense float loops, compiled per ISA (simd.h): the generic loop below is
// built for the baseline ISA, and the small L1/L2-resident tensors of a meta-learning step
// (gradient sums, inner-loop updates) run at its width otherwise. Each element is still one
// correctly rounded add, sub, mul or div, so every ISA gives the same bits.
MG_VECTORIZE void add_f32(float* o, const float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = x[i] + y[i];
}
MG_VECTORIZE void sub_f32(float* o, const float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = x[i] - y[i];
}
MG_VECTORIZE void mul_f32(float* o, const float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = x[i] * y[i];
}
MG_VECTORIZE void div_f32(float* o, const float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = x[i] / y[i];
}
// x * (y > 0 ? 1 : 0), the same bits as y > 0 ? x : x * 0 (x * 1 is x, NaN and -0 included)
// without a branch: the ?: form stayed a scalar loop with a branch in the AVX2 clone.
MG_VECTORIZE void mul_positive_mask_f32(float* o, const float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = x[i] * vec::select_f32(y[i] > 0.0f, 1.0f, 0.0f);
}
MG_VECTORIZE void add_scalar_f32(float* o, const float* x, float y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = x[i] + y;
}
MG_VECTORIZE void sub_scalar_f32(float* o, const float* x, float y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = x[i] - y;
}
MG_VECTORIZE void mul_scalar_f32(float* o, const float* x, float y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = x[i] * y;
}
MG_VECTORIZE void div_scalar_f32(float* o, const float* x, float y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = x[i] / y;
}

// The loops above for float Add/Sub/Mul/Div (and MulPositiveMask); false for any other op or dtype.
template <BinaryOp Op, typename T>
bool dense_isa_loop(T* o, const T* x, const T* y, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    if constexpr (Op == BinaryOp::Add) return add_f32(o, x, y, n), true;
    if constexpr (Op == BinaryOp::Sub) return sub_f32(o, x, y, n), true;
    if constexpr (Op == BinaryOp::Mul) return mul_f32(o, x, y, n), true;
    if constexpr (Op == BinaryOp::Div) return div_f32(o, x, y, n), true;
    if constexpr (Op == BinaryOp::MulPositiveMask) return mul_positive_mask_f32(o, x, y, n), true;
  }
  return false;
}

template <BinaryOp Op, typename T>
bool dense_isa_loop_scalar(T* o, const T* x, T y, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    if constexpr (Op == BinaryOp::Add) return add_scalar_f32(o, x, y, n), true;
    if constexpr (Op == BinaryOp::Sub) return sub_scalar_f32(o, x, y, n), true;
    if constexpr (Op == BinaryOp::Mul) return mul_scalar_f32(o, x, y, n), true;
    if constexpr (Op == BinaryOp::Div) return div_scalar_f32(o, x, y, n), true;
  }
  return false;
}

template <BinaryOp Op, typename T>
void binary_typed(const Tensor& a, const Tensor& b, const Tensor& out) {
  if constexpr (std::is_integral_v<T> && (Op == BinaryOp::Div || Op == BinaryOp::Pow)) {
    MG_FAIL(binary_op_name(Op), ": dtype int64 is not supported");
  } else {
    constexpr int64_t e = sizeof(T);
    const auto plan = make_plan<3>(out.shape(), {&out.strides(), &a.strides(), &b.strides()}, {e, e, e});
    // An operand read across its rows (the gradient of a transposed product added to another:
    // strided along the run, unit stride along the next dim) is first copied into place by the
    // blocked transposing copy, then the runs are dense: the strided loop at the end moved about
    // one element per cycle (W-sin: 3-5% of its step). Other strided operands stay on that loop,
    // which a plain copy first would not beat.
    if constexpr (std::is_floating_point_v<T>) {
      const std::size_t nd = plan.sizes.size();
      if (nd >= 2 && plan.numel >= 64 && plan.strides[nd - 1][0] == e) {
        const auto across = [&](std::size_t k) {
          return plan.strides[nd - 1][k] != e && plan.strides[nd - 1][k] != 0 && plan.strides[nd - 2][k] == e;
        };
        const bool a_across = across(1), b_across = across(2);
        if (a_across || b_across) {
          const auto in_place = [](const Tensor& t) {
            Tensor dense = Tensor::empty(t.shape(), t.dtype(), kCPU);
            copy_typed<T, T>(t, dense);
            return dense;
          };
          return binary_typed<Op, T>(a_across ? in_place(a) : a, b_across ? in_place(b) : b, out);
        }
      }
    }
    run_to_output(plan, {bytes(out), bytes(a), bytes(b)},
                  [](std::array<char*, 3> p, const std::array<int64_t, 3>& s, int64_t n) {
                    T* o = at<T>(p[0], 0);
                    const T* x = at<T>(p[1], 0);
                    const T* y = at<T>(p[2], 0);
                    if (s[0] == e && s[1] == e && s[2] == e) {
                      if (dense_isa_loop<Op, T>(o, x, y, n)) return;
                      for (int64_t i = 0; i < n; ++i) o[i] = binary_fn<Op>(x[i], y[i]);
                    } else if (s[0] == e && s[1] == e && s[2] == 0) {
                      const T yv = *y;
                      if (dense_isa_loop_scalar<Op, T>(o, x, yv, n)) return;
                      for (int64_t i = 0; i < n; ++i) o[i] = binary_fn<Op>(x[i], yv);
                    } else if (s[0] == e && s[1] == 0 && s[2] == e) {
                      const T xv = *x;
                      for (int64_t i = 0; i < n; ++i) o[i] = binary_fn<Op>(xv, y[i]);
                    } else if (s[0] == e && s[1] == 0 && s[2] == 0) {
                      // Both broadcast along the run (mean's backward: the reduced gradient over the count).
                      std::fill(o, o + n, binary_fn<Op>(*x, *y));
                    } else {
                      for (int64_t i = 0; i < n; ++i)
                        *at<T>(p[0], i * s[0]) = binary_fn<Op>(*at<T>(p[1], i * s[1]), *at<T>(p[2], i * s[2]));
                    }
                  });
  }
}

template <typename T, size_t... I>
void binary_dispatch(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, std::index_sequence<I...>) {
  const bool found = ((op == static_cast<BinaryOp>(I)
                           ? (binary_typed<static_cast<BinaryOp>(I), T>(a, b, out), true)
                           : false) ||
                      ...);
  MG_CHECK(found, "binary: unknown op ", static_cast<int>(op));
}

}  // namespace

void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_dtype(out.dtype(), [&]<typename T>() {
    binary_dispatch<T>(op, a, b, out, std::make_index_sequence<static_cast<size_t>(BinaryOp::Count)>{});
  });
}

// ---- where ----

void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_dtype(cond.dtype(), [&]<typename C>() {
    dispatch_dtype(out.dtype(), [&]<typename T>() {
      constexpr int64_t e = sizeof(T);
      const auto plan = make_plan<4>(out.shape(), {&out.strides(), &cond.strides(), &a.strides(), &b.strides()},
                                     {e, int64_t{sizeof(C)}, e, e});
      run_to_output(plan, {bytes(out), bytes(cond), bytes(a), bytes(b)},
                    [](std::array<char*, 4> p, const std::array<int64_t, 4>& s, int64_t n) {
                      for (int64_t i = 0; i < n; ++i)
                        *at<T>(p[0], i * s[0]) =
                            *at<C>(p[1], i * s[1]) != C(0) ? *at<T>(p[2], i * s[2]) : *at<T>(p[3], i * s[3]);
                    });
    });
  });
}

}  // namespace mg::cpu
