// Philox fill of a contiguous tensor: the very functions of ../tensor/philox.h, so that a seed and
// offset give the CPU's numbers. Uniform and integer draws match bit for bit; normal draws match
// up to the last ulp of log and cos, which CUDA's math library and the host's libm may round apart.
#include <type_traits>

#include "../tensor/philox.h"
#include "cuda_kernels.h"
#include "cuda_launch.cuh"
#include "cuda_math.cuh"

namespace mg::cuda {
namespace {

// a + (b - a) * u in double, rounded to T, kept below b (as the CPU's scale_uniform).
template <typename T>
__device__ T scale_uniform(double u, double a, double b) {
  const T v = static_cast<T>(a + (b - a) * u);
  if (v >= static_cast<T>(b) && b > a) {
    if constexpr (std::is_same_v<T, float>)
      return nextafterf(static_cast<float>(b), -INFINITY);
    else
      return nextafter(static_cast<double>(b), -static_cast<double>(INFINITY));
  }
  return v;
}

template <typename T>
__global__ void random_kernel(T* out, int64_t n, RandomKind kind, uint64_t seed, uint64_t offset, double a, double b) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += stride) {
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
        out[i] = static_cast<T>(static_cast<int64_t>(static_cast<uint64_t>(low) + draw));
        break;
      }
    }
  }
}

}  // namespace

void random(const Tensor& dst, RandomKind kind, uint64_t seed, uint64_t offset, double a, double b) {
  dispatch_dtype(dst.dtype(), [&]<typename T>() {
    const int64_t n = dst.numel();
    random_kernel<T><<<blocks_for(n), kThreads, 0, stream_of(dst)>>>(ptr<T>(dst), n, kind, seed, offset, a, b);
    MG_CUDA_CHECK_LAUNCH("random");
  });
}

}  // namespace mg::cuda
