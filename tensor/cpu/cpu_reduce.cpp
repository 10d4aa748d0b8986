// Reductions (sum, max, min over any set of dims) and arg-reductions (argmax/argmin along one dim).
//
// The reduced dims and the kept dims each become one strided plan. Three shapes of work:
//   - everything reduced (one output): fixed-size chunks of the input summed in parallel and
//     merged in order, so the result does not depend on the thread count;
//   - "inner" reductions (the reduced dims are the fast-moving ones, e.g. a row sum): one
//     output at a time, its reduction a tight loop;
//   - "outer" reductions (e.g. a column sum of a row-major matrix): a block of neighbouring
//     outputs accumulates together while the reduced dims are walked, so memory is read in
//     order and the block loop vectorises.
// Parallelism is always over outputs (or over fixed chunks for a full reduction).
#include <cmath>
#include <cstdlib>
#include <limits>
#include <type_traits>

#include "cpu_kernels.h"
#include "simd.h"
#include "strided_loop.h"

namespace mg::cpu {
namespace {

// acc[j] += v[j] in double for `rows` rows of floats `stride` apart: the outer sum's block loop,
// compiled per ISA (simd.h) since the generic template is built for the baseline one. Same
// additions, same bits. All the rows in one call where the reduced dims are one: a per-task bias
// gradient (a sum over a few rows of a few dozen values) spent more in a call per row and the
// reduced plan's walk than in the additions.
MG_VECTORIZE void accumulate_rows_f32(double* acc, const float* v, int64_t stride, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r, v += stride)
    for (int64_t j = 0; j < n; ++j) acc[j] += static_cast<double>(v[j]);
}

template <ReduceOp Op, typename T>
struct Reducer {
  // Sums of floats accumulate in double; of int64 in int64 (wrapping, never UB).
  using Acc = std::conditional_t<Op == ReduceOp::Sum,
                                 std::conditional_t<std::is_floating_point_v<T>, double, int64_t>, T>;

  static Acc init() {
    if constexpr (Op == ReduceOp::Sum) return Acc(0);
    if constexpr (Op == ReduceOp::Max) {
      if constexpr (std::is_floating_point_v<T>) return -std::numeric_limits<T>::infinity();
      return std::numeric_limits<T>::lowest();
    }
    if constexpr (Op == ReduceOp::Min) {
      if constexpr (std::is_floating_point_v<T>) return std::numeric_limits<T>::infinity();
      return std::numeric_limits<T>::max();
    }
    return Acc(0);
  }

  // NaN propagates through max and min, like PyTorch.
  static Acc combine(Acc acc, T v) {
    if constexpr (Op == ReduceOp::Sum) {
      if constexpr (std::is_integral_v<T>)
        return static_cast<Acc>(static_cast<uint64_t>(acc) + static_cast<uint64_t>(v));
      else
        return acc + static_cast<Acc>(v);
    }
    if constexpr (Op == ReduceOp::Max) {
      if constexpr (std::is_floating_point_v<T>) return (v > acc || std::isnan(v)) ? v : acc;
      return v > acc ? v : acc;
    }
    if constexpr (Op == ReduceOp::Min) {
      if constexpr (std::is_floating_point_v<T>) return (v < acc || std::isnan(v)) ? v : acc;
      return v < acc ? v : acc;
    }
    return acc;
  }

  static Acc merge(Acc a, Acc b) {
    if constexpr (Op == ReduceOp::Sum) {
      if constexpr (std::is_integral_v<T>)
        return static_cast<Acc>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
      else
        return a + b;
    } else {
      return combine(a, b);
    }
  }
};

// reduce_run's dense float sum, compiled per ISA: 32 partial sums in double, so that even
// AVX-512 has four independent vector chains to keep its adders busy (a full-tensor sum, as
// BatchNorm's statistics, is otherwise bound by the add latency). Every ISA performs the same
// additions in the same order, so the result does not depend on the machine.
MG_VECTORIZE double dense_sum_f32(double acc, const float* x, int64_t n) {
  constexpr int kParts = 32;
  if (n < kParts) {  // a short row (a softmax's keys, a layer's features): the same additions, no tree
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]);
    return acc + sum;
  }
  // Fully unrolled, so that the partial sums live in registers: with a loop over the tree, the
  // AVX2 clone kept them in memory and spent more time in the tree than in the sum of a short run.
  double part[kParts] = {};
  int64_t i = 0;
  for (; i + kParts <= n; i += kParts)
#pragma GCC unroll 32
    for (int k = 0; k < kParts; ++k) part[k] += static_cast<double>(x[i + k]);
  for (; i < n; ++i) part[0] += static_cast<double>(x[i]);
#pragma GCC unroll 5
  for (int width = kParts / 2; width > 0; width /= 2)
#pragma GCC unroll 16
    for (int k = 0; k < width; ++k) part[k] += part[k + width];
  return acc + part[0];
}

// The arg-max (or arg-min) of n neighbouring outputs at once, each over len elements that lie
// `step` floats apart (max-pooling's windows after im2col): a vector of outputs per compare
// instead of one output's strided walk. The generic loop's comparisons, element for element: the
// first index wins ties and the first NaN wins.
MG_VECTORIZE void arg_reduce_rows_f32(const float* x, int64_t step, int64_t len, int64_t n, bool is_max, float* best,
                                      int64_t* best_i) {
  for (int64_t j = 0; j < n; ++j) {
    best[j] = x[j];
    best_i[j] = 0;
  }
  for (int64_t i = 1; i < len; ++i) {
    const float* row = x + i * step;
    for (int64_t j = 0; j < n; ++j) {
      const float v = row[j], b = best[j];
      const bool better = (is_max ? v > b : v < b) || (v != v && b == b);
      best[j] = better ? v : b;
      best_i[j] = better ? i : best_i[j];
    }
  }
}

// Accumulates one run of n elements (byte stride s) into acc.
template <ReduceOp Op, typename T>
typename Reducer<Op, T>::Acc reduce_run(typename Reducer<Op, T>::Acc acc, const char* p, int64_t s, int64_t n) {
  using R = Reducer<Op, T>;
  if (s == static_cast<int64_t>(sizeof(T))) {
    const T* x = reinterpret_cast<const T*>(p);
    if constexpr (Op == ReduceOp::Sum && std::is_same_v<T, float>) {
      return dense_sum_f32(acc, x, n);
    } else if constexpr (Op == ReduceOp::Sum) {
      // Four independent partial sums: keeps the adder pipelines busy.
      typename R::Acc part[4] = {0, 0, 0, 0};
      int64_t i = 0;
      for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; ++k) part[k] = R::combine(part[k], x[i + k]);
      for (; i < n; ++i) part[0] = R::combine(part[0], x[i]);
      return R::merge(acc, R::merge(R::merge(part[0], part[1]), R::merge(part[2], part[3])));
    } else {
      for (int64_t i = 0; i < n; ++i) acc = R::combine(acc, x[i]);
      return acc;
    }
  }
  for (int64_t i = 0; i < n; ++i) acc = R::combine(acc, *reinterpret_cast<const T*>(p + i * s));
  return acc;
}

template <ReduceOp Op, typename T>
typename Reducer<Op, T>::Acc reduce_all(const StridedPlan<1>& plan, char* base, int64_t begin, int64_t end) {
  typename Reducer<Op, T>::Acc acc = Reducer<Op, T>::init();
  run_range(plan, {base}, begin, end, [&](std::array<char*, 1> p, const std::array<int64_t, 1>& s, int64_t n) {
    acc = reduce_run<Op, T>(acc, p[0], s[0], n);
  });
  return acc;
}

// The same additions as reduce_all over `runs` contiguous runs of len elements, `stride` bytes
// apart (a per-channel sum of an [N, C, H, W] tensor: N planes C planes apart): each run asks for
// the next one while it is summed, since a run of a few KiB ends before the hardware prefetcher
// has picked up its stream.
template <ReduceOp Op, typename T>
typename Reducer<Op, T>::Acc reduce_strided_runs(const char* p, int64_t runs, int64_t len, int64_t stride) {
  typename Reducer<Op, T>::Acc acc = Reducer<Op, T>::init();
  for (int64_t r = 0; r < runs; ++r) {
    const char* run = p + r * stride;
    if (r + 1 < runs)
      for (int64_t b = 0; b < len * static_cast<int64_t>(sizeof(T)); b += 64) __builtin_prefetch(run + stride + b);
    acc = reduce_run<Op, T>(acc, run, sizeof(T), len);
  }
  return acc;
}

template <ReduceOp Op, typename T>
void reduce_typed(const Tensor& x, const std::vector<int>& dims, const Tensor& out) {
  using R = Reducer<Op, T>;
  using Acc = typename R::Acc;
  constexpr int64_t e = sizeof(T);
  const Shape& shape = x.shape();
  Shape kept_shape, red_shape;
  Strides kept_x, kept_out, red_x;
  size_t next = 0;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (next < dims.size() && dims[next] == static_cast<int>(d)) {
      ++next;
      red_shape.push_back(shape[d]);
      red_x.push_back(x.strides()[d]);
    } else {
      kept_shape.push_back(shape[d]);
      kept_x.push_back(x.strides()[d]);
      kept_out.push_back(out.strides()[d]);
    }
  }
  const auto kept = make_plan<2>(kept_shape, {&kept_out, &kept_x}, {e, e});
  const auto red = make_plan<1>(red_shape, {&red_x}, {e});
  const int64_t outputs = kept.numel, count = red.numel;
  char* xb = bytes(x);
  char* ob = bytes(out);

  if (outputs == 1) {
    constexpr int64_t kChunk = 16384;
    const int64_t chunks = (count + kChunk - 1) / kChunk;
    std::vector<Acc> partial(static_cast<size_t>(chunks), R::init());
    parallel_for(chunks, kChunk, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c)
        partial[c] = reduce_all<Op, T>(red, xb, c * kChunk, std::min(count, (c + 1) * kChunk));
    });
    Acc acc = R::init();
    for (const Acc& p : partial) acc = R::merge(acc, p);
    *reinterpret_cast<T*>(ob) = static_cast<T>(acc);
    return;
  }

  const int64_t red_inner = red.sizes.empty() ? 0 : std::abs(red.strides.back()[0]);
  const int64_t kept_inner = kept.sizes.empty() ? 0 : std::abs(kept.strides.back()[1]);
  const bool inner = red_inner != 0 && red_inner <= kept_inner;
  const bool one_run = red.sizes.size() == 1 && red.strides[0][0] == e;
  const bool strided_runs = red.sizes.size() == 2 && red.strides[1][0] == e;

  parallel_for(outputs, count, [&](int64_t begin, int64_t end) {
    run_range(kept, {ob, xb}, begin, end, [&](std::array<char*, 2> p, const std::array<int64_t, 2>& s, int64_t n) {
      if (inner) {  // when each output is one contiguous run, no plan walk per output
        for (int64_t j = 0; j < n; ++j) {
          char* row = p[1] + j * s[1];
          *reinterpret_cast<T*>(p[0] + j * s[0]) = static_cast<T>(
              one_run        ? reduce_run<Op, T>(R::init(), row, e, count)
              : strided_runs ? reduce_strided_runs<Op, T>(row, red.sizes[0], red.sizes[1], red.strides[0][0])
                             : reduce_all<Op, T>(red, row, 0, count));
        }
        return;
      }
      constexpr int64_t kBlock = 64;
      for (int64_t j0 = 0; j0 < n; j0 += kBlock) {
        const int64_t nb = std::min(kBlock, n - j0);
        Acc acc[kBlock];
        for (int64_t j = 0; j < nb; ++j) acc[j] = R::init();
        const int64_t sx = s[1];
        bool summed = false;
        if constexpr (Op == ReduceOp::Sum && std::is_same_v<T, float>) {
          if (sx == e && red.sizes.size() == 1) {
            accumulate_rows_f32(acc, reinterpret_cast<const float*>(p[1] + j0 * sx), red.strides[0][0] / e, count, nb);
            summed = true;
          }
        }
        if (!summed)
          run_range(red, {p[1] + j0 * sx}, 0, count,
                    [&](std::array<char*, 1> q, const std::array<int64_t, 1>& rs, int64_t nr) {
                      for (int64_t r = 0; r < nr; ++r) {
                        const char* row = q[0] + r * rs[0];
                        if constexpr (Op == ReduceOp::Sum && std::is_same_v<T, float>) {
                          if (sx == e) {
                            accumulate_rows_f32(acc, reinterpret_cast<const float*>(row), 0, 1, nb);
                            continue;
                          }
                        }
                        if (sx == e) {
                          const T* v = reinterpret_cast<const T*>(row);
                          for (int64_t j = 0; j < nb; ++j) acc[j] = R::combine(acc[j], v[j]);
                        } else {
                          for (int64_t j = 0; j < nb; ++j)
                            acc[j] = R::combine(acc[j], *reinterpret_cast<const T*>(row + j * sx));
                        }
                      }
                    });
        for (int64_t j = 0; j < nb; ++j) *reinterpret_cast<T*>(p[0] + (j0 + j) * s[0]) = static_cast<T>(acc[j]);
      }
    });
  });
}

template <ReduceOp Op, typename T>
void arg_reduce_typed(const Tensor& x, int dim, const Tensor& values, const Tensor& indices) {
  constexpr int64_t e = sizeof(T);
  Shape kept_shape;
  Strides kept_v, kept_i, kept_x;
  for (int d = 0; d < static_cast<int>(x.dim()); ++d) {
    if (d == dim) continue;
    kept_shape.push_back(x.shape()[d]);
    kept_v.push_back(values.strides()[d]);
    kept_i.push_back(indices.strides()[d]);
    kept_x.push_back(x.strides()[d]);
  }
  const auto kept = make_plan<3>(kept_shape, {&kept_v, &kept_i, &kept_x}, {e, 8, e});
  const int64_t len = x.shape()[dim];
  const int64_t step = x.strides()[dim] * e;
  parallel_for(kept.numel, len, [&](int64_t begin, int64_t end) {
    run_range(kept, {bytes(values), bytes(indices), bytes(x)}, begin, end,
              [&](std::array<char*, 3> p, const std::array<int64_t, 3>& s, int64_t n) {
                if constexpr (std::is_same_v<T, float>) {
                  if (s[0] == e && s[1] == 8 && s[2] == e && step % e == 0) {
                    arg_reduce_rows_f32(reinterpret_cast<const float*>(p[2]), step / e, len, n, Op == ReduceOp::Max,
                                        reinterpret_cast<float*>(p[0]), reinterpret_cast<int64_t*>(p[1]));
                    return;
                  }
                }
                for (int64_t j = 0; j < n; ++j) {
                  const char* row = p[2] + j * s[2];
                  T best = *reinterpret_cast<const T*>(row);
                  int64_t best_i = 0;
                  for (int64_t i = 1; i < len; ++i) {
                    const T v = *reinterpret_cast<const T*>(row + i * step);
                    bool better;
                    if constexpr (Op == ReduceOp::Max)
                      better = v > best;
                    else
                      better = v < best;
                    if constexpr (std::is_floating_point_v<T>) better = better || (std::isnan(v) && !std::isnan(best));
                    if (better) {  // strict: the first index wins ties (and the first NaN wins)
                      best = v;
                      best_i = i;
                    }
                  }
                  *reinterpret_cast<T*>(p[0] + j * s[0]) = best;
                  *reinterpret_cast<int64_t*>(p[1] + j * s[1]) = best_i;
                }
              });
  });
}

}  // namespace

void reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims, const Tensor& out) {
  dispatch_dtype(x.dtype(), [&]<typename T>() {
    switch (op) {
      case ReduceOp::Sum: return reduce_typed<ReduceOp::Sum, T>(x, dims, out);
      case ReduceOp::Max: return reduce_typed<ReduceOp::Max, T>(x, dims, out);
      case ReduceOp::Min: return reduce_typed<ReduceOp::Min, T>(x, dims, out);
      default: MG_FAIL("reduce: unknown op ", static_cast<int>(op));
    }
  });
}

void arg_reduce(ReduceOp op, const Tensor& x, int dim, const Tensor& values, const Tensor& indices) {
  dispatch_dtype(x.dtype(), [&]<typename T>() {
    switch (op) {
      case ReduceOp::Max: return arg_reduce_typed<ReduceOp::Max, T>(x, dim, values, indices);
      case ReduceOp::Min: return arg_reduce_typed<ReduceOp::Min, T>(x, dim, values, indices);
      default: MG_FAIL("arg_reduce: only max and min, got ", reduce_op_name(op));
    }
  });
}

}  // namespace mg::cpu
