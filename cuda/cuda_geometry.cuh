#pragma once
// Strided N-d indexing for kernels: the shape that a thread's linear index is decomposed over,
// and each operand's element strides. Built on the host the way the CPU's strided loops plan
// theirs (tensor/cpu/strided_loop.h): dims of size 1 dropped, dims that are contiguous with each
// other in every operand merged, so a contiguous or simply broadcast tensor has one or two dims
// and a thread spends a division or two, not one per original dim.
#include <array>
#include <cstdint>
#include <limits>

#include "../tensor/error.h"
#include "../tensor/shape.h"

namespace mg::cuda {

// Dims after merging. A kernel argument holds them inline; shapes that keep more dims after
// merging are an mg::Error (no layout metagrad builds comes near).
inline constexpr int kMaxDims = 10;

template <int N>
struct Geometry {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};  // in elements, per operand
};

template <int N>
Geometry<N> make_geometry(const char* op, const Shape& shape, const std::array<const Strides*, N>& strides) {
  Geometry<N> g;
  int nd = 0;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (nd > 0) {
      bool mergeable = true;
      for (int k = 0; k < N; ++k) mergeable = mergeable && g.strides[k][nd - 1] == (*strides[k])[d] * shape[d];
      if (mergeable) {
        g.sizes[nd - 1] *= shape[d];
        for (int k = 0; k < N; ++k) g.strides[k][nd - 1] = (*strides[k])[d];
        continue;
      }
    }
    MG_CHECK(nd < kMaxDims, op, ": shape ", shape_str(shape), " keeps more than ", kMaxDims,
             " dims after merging; the CUDA kernels support at most that many");
    g.sizes[nd] = shape[d];
    for (int k = 0; k < N; ++k) g.strides[k][nd] = (*strides[k])[d];
    ++nd;
  }
  g.ndim = nd;
  return g;
}

// Element offsets of operand k for linear (row-major) index i of the geometry's shape. Index is
// uint32_t whenever the element count allows: 64-bit division costs several times as much.
template <int N, typename Index>
__device__ __forceinline__ void offsets_of(const Geometry<N>& g, Index i, int64_t (&off)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) off[k] = 0;
#pragma unroll
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d >= g.ndim) continue;
    const Index size = static_cast<Index>(g.sizes[d]);
    const Index coord = i % size;
    i /= size;
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += static_cast<int64_t>(coord) * g.strides[k][d];
  }
}

inline bool fits_uint32(int64_t n) { return n <= static_cast<int64_t>(std::numeric_limits<uint32_t>::max()); }

// An unmerged geometry for the indexing kernels, which must see the coordinate along one dim.
template <int N>
struct DimGeometry {
  int ndim = 0;
  int dim = 0;  // the indexed dim
  int64_t sizes[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};
};

template <int N>
DimGeometry<N> make_dim_geometry(const char* op, const Shape& shape, const std::array<const Strides*, N>& strides,
                                 int dim) {
  MG_CHECK(static_cast<int>(shape.size()) <= kMaxDims, op, ": shape ", shape_str(shape), " has more than ", kMaxDims,
           " dims; the CUDA indexing kernels support at most that many");
  DimGeometry<N> g;
  g.ndim = static_cast<int>(shape.size());
  g.dim = dim;
  for (int d = 0; d < g.ndim; ++d) {
    g.sizes[d] = shape[d];
    for (int k = 0; k < N; ++k) g.strides[k][d] = (*strides[k])[d];
  }
  return g;
}

// Offsets as offsets_of, and the coordinate along g.dim.
template <int N>
__device__ __forceinline__ int64_t dim_offsets_of(const DimGeometry<N>& g, int64_t i, int64_t (&off)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) off[k] = 0;
  int64_t at_dim = 0;
#pragma unroll
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d >= g.ndim) continue;
    const int64_t coord = i % g.sizes[d];
    i /= g.sizes[d];
    if (d == g.dim) at_dim = coord;
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += coord * g.strides[k][d];
  }
  return at_dim;
}

}  // namespace mg::cuda
