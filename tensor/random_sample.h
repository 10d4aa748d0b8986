#pragma once
// One sample of a random fill, as every backend computes it: element `index` (= offset + i) of a
// draw with this seed, mapped from its Philox block as tensor/philox.h specifies. The CPU's fill
// and the CUDA kernel both call this function, so a seed gives the same numbers on every device
// by construction (normal draws up to the last ulp of log and cos in each math library).
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "philox.h"
#include "random_kind.h"

namespace mg::philox {

// a + (b - a) * u in double, rounded to T, kept below b.
template <typename T>
MG_HOST_DEVICE inline T scale_uniform(double u, double a, double b) {
  const T v = static_cast<T>(a + (b - a) * u);
  if (v >= static_cast<T>(b) && b > a) {
    if constexpr (std::is_same_v<T, float>)
      return ::nextafterf(static_cast<float>(b), -HUGE_VALF);
    else
      return ::nextafter(static_cast<double>(b), -HUGE_VAL);
  }
  return v;
}

// double to T; to int64 it saturates (NaN gives 0) instead of being undefined.
template <typename T>
MG_HOST_DEVICE inline T saturate_to(double v) {
  if constexpr (std::is_same_v<T, int64_t>) {
    if (v != v) return 0;
    if (v >= 9.2233720368547758e18) return INT64_MAX;
    if (v < -9.2233720368547758e18) return INT64_MIN;
  }
  return static_cast<T>(v);
}

template <typename T>
MG_HOST_DEVICE inline T sample(RandomKind kind, uint64_t seed, uint64_t index, double a, double b) {
  const Block r = draw(seed, index);
  switch (kind) {
    case RandomKind::Uniform:
      if constexpr (std::is_same_v<T, float>)
        return scale_uniform<float>(static_cast<double>(uniform01_float(r)), a, b);
      else if constexpr (std::is_same_v<T, double>)
        return scale_uniform<double>(uniform01_double(r), a, b);
      else
        return saturate_to<T>(a + (b - a) * uniform01_double(r));
    case RandomKind::Normal:
      return saturate_to<T>(a + b * standard_normal(r));
    case RandomKind::Integer: {
      const int64_t low = static_cast<int64_t>(a);
      const uint64_t range = static_cast<uint64_t>(static_cast<int64_t>(b)) - static_cast<uint64_t>(low);
      const uint64_t bits = range == 0 ? 0 : bits64(r) % range;
      return static_cast<T>(static_cast<int64_t>(static_cast<uint64_t>(low) + bits));
    }
  }
  return T{};
}

}  // namespace mg::philox
