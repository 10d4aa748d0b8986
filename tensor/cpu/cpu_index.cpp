// Indexing kernels: index_select, index_add, gather, scatter_add. Indices arrive range-checked.
// The accumulating ones (index_add, scatter_add) are race-free by construction: work is split
// only over the dims that are not indexed, so two threads never add into the same element.
#include <cstdint>
#include <type_traits>

#include "cpu_kernels.h"
#include "strided_loop.h"

namespace mg::cpu {
namespace {

template <typename T>
inline void accumulate(T* dst, T v) {
  if constexpr (std::is_integral_v<T>)
    *dst = static_cast<T>(static_cast<uint64_t>(*dst) + static_cast<uint64_t>(v));
  else
    *dst += v;
}

int64_t index_at(const Tensor& index, int64_t j) {
  return index.data_ptr<int64_t>()[j * index.strides()[0]];
}

template <typename T>
void index_select_typed(const Tensor& x, int dim, const Tensor& index, const Tensor& out) {
  constexpr int64_t e = sizeof(T);
  Shape slice;
  Strides xs, os;
  drop_dim(x.shape(), x.strides(), dim, slice, xs);
  drop_dim(out.shape(), out.strides(), dim, slice, os);
  const auto plan = make_plan<2>(slice, {&os, &xs}, {e, e});
  const int64_t count = index.numel();
  const int64_t x_step = x.strides()[dim] * e, out_step = out.strides()[dim] * e;
  auto copy_run = [](std::array<char*, 2> p, const std::array<int64_t, 2>& s, int64_t n) {
    if (s[0] == e && s[1] == e) {
      T* o = reinterpret_cast<T*>(p[0]);
      const T* in = reinterpret_cast<const T*>(p[1]);
      for (int64_t i = 0; i < n; ++i) o[i] = in[i];
    } else {
      for (int64_t i = 0; i < n; ++i) *reinterpret_cast<T*>(p[0] + i * s[0]) = *reinterpret_cast<T*>(p[1] + i * s[1]);
    }
  };
  char* xb = bytes(x);
  char* ob = bytes(out);
  if (count >= 16 || plan.numel < kParallelThreshold) {
    parallel_for(count, plan.numel, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j)
        run_range(plan, {ob + j * out_step, xb + index_at(index, j) * x_step}, 0, plan.numel, copy_run);
    });
  } else {
    for (int64_t j = 0; j < count; ++j) run(plan, {ob + j * out_step, xb + index_at(index, j) * x_step}, copy_run);
  }
}

template <typename T>
void index_add_typed(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  constexpr int64_t e = sizeof(T);
  Shape slice;
  Strides os, ss;
  drop_dim(out.shape(), out.strides(), dim, slice, os);
  drop_dim(src.shape(), src.strides(), dim, slice, ss);
  const auto plan = make_plan<2>(slice, {&os, &ss}, {e, e});
  const int64_t count = index.numel();
  const int64_t out_step = out.strides()[dim] * e, src_step = src.strides()[dim] * e;
  char* ob = bytes(out);
  char* sb = bytes(src);
  auto add_run = [](std::array<char*, 2> p, const std::array<int64_t, 2>& s, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
      accumulate(reinterpret_cast<T*>(p[0] + i * s[0]), *reinterpret_cast<const T*>(p[1] + i * s[1]));
  };
  // Threads split the slice (non-indexed dims); each walks every index in order.
  parallel_for(plan.numel, count, [&](int64_t begin, int64_t end) {
    for (int64_t j = 0; j < count; ++j)
      run_range(plan, {ob + index_at(index, j) * out_step, sb + j * src_step}, begin, end, add_run);
  });
}

template <typename T>
void gather_typed(const Tensor& x, int dim, const Tensor& index, const Tensor& out) {
  constexpr int64_t e = sizeof(T);
  Strides xs = x.strides();
  const int64_t x_step = xs[dim] * e;
  xs[dim] = 0;  // the position along dim comes from the index
  const auto plan = make_plan<3>(out.shape(), {&out.strides(), &index.strides(), &xs}, {e, 8, e});
  run(plan, {bytes(out), bytes(index), bytes(x)},
      [x_step](std::array<char*, 3> p, const std::array<int64_t, 3>& s, int64_t n) {
        for (int64_t i = 0; i < n; ++i) {
          const int64_t id = *reinterpret_cast<const int64_t*>(p[1] + i * s[1]);
          *reinterpret_cast<T*>(p[0] + i * s[0]) = *reinterpret_cast<const T*>(p[2] + i * s[2] + id * x_step);
        }
      });
}

template <typename T>
void scatter_add_typed(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  constexpr int64_t e = sizeof(T);
  // Iterate over index's shape without dim; along dim sequentially (that is where two
  // source elements can hit the same output element).
  Shape outer;
  Strides os, is, ss;
  Shape unused;
  drop_dim(index.shape(), index.strides(), dim, outer, is);
  drop_dim(src.shape(), src.strides(), dim, unused, ss);
  drop_dim(out.shape(), out.strides(), dim, unused, os);
  const auto plan = make_plan<3>(outer, {&os, &is, &ss}, {e, 8, e});
  const int64_t len = index.shape()[dim];
  const int64_t out_step = out.strides()[dim] * e, idx_step = index.strides()[dim] * 8,
                src_step = src.strides()[dim] * e;
  parallel_for(plan.numel, len, [&](int64_t begin, int64_t end) {
    run_range(plan, {bytes(out), bytes(index), bytes(src)}, begin, end,
              [&](std::array<char*, 3> p, const std::array<int64_t, 3>& s, int64_t n) {
                for (int64_t i = 0; i < n; ++i) {
                  char* o = p[0] + i * s[0];
                  const char* ix = p[1] + i * s[1];
                  const char* sr = p[2] + i * s[2];
                  for (int64_t j = 0; j < len; ++j) {
                    const int64_t id = *reinterpret_cast<const int64_t*>(ix + j * idx_step);
                    accumulate(reinterpret_cast<T*>(o + id * out_step), *reinterpret_cast<const T*>(sr + j * src_step));
                  }
                }
              });
  });
}

}  // namespace

void index_select(const Tensor& x, int dim, const Tensor& index, const Tensor& out) {
  dispatch_dtype(x.dtype(), [&]<typename T>() { index_select_typed<T>(x, dim, index, out); });
}

void index_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  dispatch_dtype(out.dtype(), [&]<typename T>() { index_add_typed<T>(out, dim, index, src); });
}

void gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out) {
  dispatch_dtype(x.dtype(), [&]<typename T>() { gather_typed<T>(x, dim, index, out); });
}

void scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  dispatch_dtype(out.dtype(), [&]<typename T>() { scatter_add_typed<T>(out, dim, index, src); });
}

}  // namespace mg::cpu
