// Philox fill of a contiguous tensor; the sample mapping lives in ../philox.h (shared with CUDA).
#include <cmath>
#include <limits>
#include <type_traits>

#include "../philox.h"
#include "convert.h"
#include "cpu_kernels.h"
#include "parallel.h"

namespace mg::cpu {
namespace {

// a + (b - a) * u in double, rounded to T, kept below b.
template <typename T>
T scale_uniform(double u, double a, double b) {
  const T v = static_cast<T>(a + (b - a) * u);
  if (v >= static_cast<T>(b) && b > a) return std::nextafter(static_cast<T>(b), -std::numeric_limits<T>::infinity());
  return v;
}

}  // namespace

void random(const Tensor& dst, RandomKind kind, uint64_t seed, uint64_t offset, double a, double b) {
  dispatch_dtype(dst.dtype(), [&]<typename T>() {
    T* out = dst.data_ptr<T>();
    // Costlier than a copy per element: go parallel earlier.
    parallel_for(dst.numel(), 8, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const philox::Block r = philox::draw(seed, offset + static_cast<uint64_t>(i));
        switch (kind) {
          case RandomKind::Uniform:
            if constexpr (std::is_same_v<T, float>)
              out[i] = scale_uniform<float>(static_cast<double>(philox::uniform01_float(r)), a, b);
            else if constexpr (std::is_same_v<T, double>)
              out[i] = scale_uniform<double>(philox::uniform01_double(r), a, b);
            else
              out[i] = convert<T>(a + (b - a) * philox::uniform01_double(r));
            break;
          case RandomKind::Normal:
            out[i] = convert<T>(a + b * philox::standard_normal(r));
            break;
          case RandomKind::Integer: {
            const int64_t low = static_cast<int64_t>(a);
            const uint64_t range = static_cast<uint64_t>(static_cast<int64_t>(b)) - static_cast<uint64_t>(low);
            const uint64_t draw = range == 0 ? 0 : philox::bits64(r) % range;
            const int64_t v = static_cast<int64_t>(static_cast<uint64_t>(low) + draw);
            out[i] = static_cast<T>(v);
            break;
          }
        }
      }
    });
  });
}

}  // namespace mg::cpu
