#pragma once
// N-d strided iteration over N operands that share one shape (each with its own strides, in
// bytes after planning). Dims of size 1 are dropped and adjacent dims that are contiguous with
// each other in every operand are merged, so a contiguous tensor is one flat loop and the inner
// callback sees long runs it can vectorise.
//
//   auto plan = make_plan<2>(out.shape(), {out.strides(), x.strides()}, {sizeof(T), sizeof(T)});
//   run(plan, {out_bytes, x_bytes}, [](std::array<char*, 2> p, const std::array<int64_t, 2>& s, int64_t n) {
//     for (int64_t i = 0; i < n; ++i) ... p[0] + i * s[0] ...
//   });
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "../shape.h"
#include "../small_vector.h"
#include "parallel.h"
#include "streaming_store.h"

namespace mg::cpu {

template <std::size_t N>
struct StridedPlan {
  // Inline storage: a plan is built for every elementwise call, so it must not touch the heap.
  SmallVector<int64_t, 6> sizes;                   // merged dims, outermost first; empty for one element
  SmallVector<std::array<int64_t, N>, 6> strides;  // byte strides, per dim, per operand
  int64_t numel = 1;
  std::array<int64_t, N> elem_sizes{};  // per operand, in bytes
};

// strides[k] are operand k's strides in elements (one per dim of shape); elem_sizes[k] in bytes.
template <std::size_t N>
StridedPlan<N> make_plan(const Shape& shape, const std::array<const Strides*, N>& strides,
                         const std::array<int64_t, N>& elem_sizes) {
  StridedPlan<N> plan;
  plan.numel = numel_of(shape);
  plan.elem_sizes = elem_sizes;
  if (plan.numel == 0) return plan;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    std::array<int64_t, N> st;
    for (std::size_t k = 0; k < N; ++k) st[k] = (*strides[k])[d] * elem_sizes[k];
    if (!plan.sizes.empty()) {
      bool mergeable = true;
      for (std::size_t k = 0; k < N; ++k) mergeable = mergeable && plan.strides.back()[k] == st[k] * shape[d];
      if (mergeable) {
        plan.sizes.back() *= shape[d];
        plan.strides.back() = st;
        continue;
      }
    }
    plan.sizes.push_back(shape[d]);
    plan.strides.push_back(st);
  }
  return plan;
}

// Visits the elements with flat (row-major) indices [begin, end) as runs along the innermost
// merged dim: fn(pointers to the run's first elements, the inner byte strides, run length).
template <std::size_t N, typename Fn>
void run_range(const StridedPlan<N>& plan, std::array<char*, N> base, int64_t begin, int64_t end, Fn&& fn) {
  if (begin >= end) return;
  const int nd = static_cast<int>(plan.sizes.size());
  if (nd == 0) {
    fn(base, std::array<int64_t, N>{}, int64_t{1});
    return;
  }
  int64_t small[16];
  std::vector<int64_t> large;
  int64_t* idx = small;
  if (nd > 16) {
    large.resize(nd);
    idx = large.data();
  }
  int64_t rem = begin;
  for (int d = nd - 1; d >= 0; --d) {
    idx[d] = rem % plan.sizes[d];
    rem /= plan.sizes[d];
  }
  std::array<char*, N> ptr = base;
  for (int d = 0; d < nd; ++d)
    for (std::size_t k = 0; k < N; ++k) ptr[k] += idx[d] * plan.strides[d][k];
  const int64_t inner = plan.sizes[nd - 1];
  const std::array<int64_t, N>& inner_strides = plan.strides[nd - 1];
  int64_t pos = begin;
  for (;;) {
    const int64_t n = std::min(inner - idx[nd - 1], end - pos);
    fn(ptr, inner_strides, n);
    pos += n;
    if (pos >= end) return;
    // Step to the start of the next run (carry into outer dims).
    for (std::size_t k = 0; k < N; ++k) ptr[k] += (inner - idx[nd - 1]) * inner_strides[k] - inner * inner_strides[k];
    idx[nd - 1] = 0;
    int d = nd - 2;
    for (; d >= 0; --d) {
      for (std::size_t k = 0; k < N; ++k) ptr[k] += plan.strides[d][k];
      if (++idx[d] < plan.sizes[d]) break;
      for (std::size_t k = 0; k < N; ++k) ptr[k] -= plan.sizes[d] * plan.strides[d][k];
      idx[d] = 0;
    }
  }
}

// All elements, split over threads when large.
template <std::size_t N, typename Fn>
void run(const StridedPlan<N>& plan, const std::array<char*, N>& base, Fn&& fn) {
  parallel_for(plan.numel, 1, [&](int64_t begin, int64_t end) { run_range(plan, base, begin, end, fn); });
}

// run() for an op whose operand 0 is its output, only written (never read through p[0]). An
// output of kStreamingStoreBytes or more whose runs are contiguous is written block by block:
// fn writes a block to an L1-resident buffer, and stream_copy moves it out with streaming
// stores (streaming_store.h); other operands are read in place, so an output that is also an
// input is read before its block is overwritten.
template <std::size_t N, typename Fn>
void run_to_output(const StridedPlan<N>& plan, const std::array<char*, N>& base, Fn&& fn) {
  const int64_t e = plan.elem_sizes[0];
  // Runs shorter than a few lines would pay the extra copy without a whole line to stream.
  if (plan.numel * e < kStreamingStoreBytes || plan.sizes.empty() || plan.strides.back()[0] != e ||
      plan.sizes.back() * e < kStreamingBlockBytes) {
    run(plan, base, fn);
    return;
  }
  const int64_t block_len = kStreamingBlockBytes / e;
  parallel_for(plan.numel, 1, [&](int64_t begin, int64_t end) {
    alignas(64) char block[kStreamingBlockBytes];
    run_range(plan, base, begin, end, [&](std::array<char*, N> p, const std::array<int64_t, N>& s, int64_t n) {
      for (int64_t i = 0; i < n; i += block_len) {
        const int64_t len = std::min(block_len, n - i);
        std::array<char*, N> in_block = p;
        in_block[0] = block;
        for (std::size_t k = 1; k < N; ++k) in_block[k] += i * s[k];
        fn(in_block, s, len);
        stream_copy(p[0] + i * e, block, len * e);
      }
    });
    streaming_store_fence();
  });
}

// True when every operand's inner stride is its element size (the run is contiguous).
template <std::size_t N>
bool is_dense_run(const std::array<int64_t, N>& strides, const std::array<int64_t, N>& elem_sizes) {
  for (std::size_t k = 0; k < N; ++k)
    if (strides[k] != elem_sizes[k]) return false;
  return true;
}

}  // namespace mg::cpu
