#pragma once
// Element types and the one switch that turns a runtime dtype into a C++ type.
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string_view>

#include "error.h"

namespace mg {

enum class DType : uint8_t { Float32, Float64, Int64 };

inline constexpr DType kFloat32 = DType::Float32;
inline constexpr DType kFloat64 = DType::Float64;
inline constexpr DType kInt64 = DType::Int64;

constexpr std::size_t element_size(DType dtype) {
  return dtype == DType::Float32 ? 4 : 8;
}

constexpr std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Int64: return "int64";
  }
  return "unknown";
}

constexpr bool is_floating(DType dtype) { return dtype != DType::Int64; }

inline std::ostream& operator<<(std::ostream& out, DType dtype) { return out << dtype_name(dtype); }

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::Float32; }
template <>
constexpr DType dtype_of<double>() { return DType::Float64; }
template <>
constexpr DType dtype_of<int64_t>() { return DType::Int64; }

// Calls fn.template operator()<T>() with T the C++ type of dtype.
template <typename Fn>
decltype(auto) dispatch_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::Float32: return fn.template operator()<float>();
    case DType::Float64: return fn.template operator()<double>();
    case DType::Int64: return fn.template operator()<int64_t>();
  }
  MG_FAIL("unknown dtype ", static_cast<int>(dtype));
}

// The same, for kernels that exist only for floating types.
template <typename Fn>
decltype(auto) dispatch_floating(DType dtype, std::string_view op, Fn&& fn) {
  switch (dtype) {
    case DType::Float32: return fn.template operator()<float>();
    case DType::Float64: return fn.template operator()<double>();
    default: MG_FAIL(op, ": dtype ", dtype_name(dtype), " is not supported (needs float32 or float64)");
  }
}

}  // namespace mg
