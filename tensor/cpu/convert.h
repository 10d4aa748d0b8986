#pragma once
// Value conversion between element types without undefined behaviour: a float that does not
// fit int64 (NaN, +-inf, huge) saturates instead of being UB.
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace mg::cpu {

template <typename To, typename From>
inline To convert(From v) {
  if constexpr (std::is_same_v<To, int64_t> && std::is_floating_point_v<From>) {
    if (std::isnan(v)) return 0;
    if (v >= static_cast<From>(9.2233720368547758e18)) return std::numeric_limits<int64_t>::max();
    if (v < static_cast<From>(-9.2233720368547758e18)) return std::numeric_limits<int64_t>::min();
    return static_cast<int64_t>(v);
  } else {
    return static_cast<To>(v);
  }
}

}  // namespace mg::cpu
