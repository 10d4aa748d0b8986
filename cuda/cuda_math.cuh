#pragma once
// Device-side element functions with the CPU backend's semantics (tensor/cpu/): conversions that
// saturate instead of being undefined, NaN-propagating max/min, wrapping int64 arithmetic.
// Expressions are written as the CPU writes them; the library is compiled without FMA
// contraction (CMakeLists.txt) so that they round the same way too.
#include <cstdint>
#include <type_traits>

namespace mg::cuda {

template <typename To, typename From>
__device__ __forceinline__ To convert(From v) {
  if constexpr (std::is_same_v<To, int64_t> && std::is_floating_point_v<From>) {
    if (isnan(v)) return 0;
    if (v >= static_cast<From>(9.2233720368547758e18)) return INT64_MAX;
    if (v < static_cast<From>(-9.2233720368547758e18)) return INT64_MIN;
    return static_cast<int64_t>(v);
  } else {
    return static_cast<To>(v);
  }
}

template <typename T>
__device__ __forceinline__ bool is_nan(T v) {
  if constexpr (std::is_floating_point_v<T>)
    return isnan(v);
  else
    return false;
}

// Accumulates into *dst atomically; int64 wraps around like the CPU's unsigned addition.
template <typename T>
__device__ __forceinline__ void atomic_accumulate(T* dst, T v) {
  if constexpr (std::is_same_v<T, int64_t>)
    atomicAdd(reinterpret_cast<unsigned long long*>(dst), static_cast<unsigned long long>(v));
  else
    atomicAdd(dst, v);
}

// Warp-wide shuffles of 64-bit values; full warps only.
template <typename T>
__device__ __forceinline__ T shuffle_down(T v, int delta) {
  return __shfl_down_sync(0xffffffffu, v, delta);
}

}  // namespace mg::cuda
