// Philox fill of a contiguous tensor: each sample is ../tensor/random_sample.h's, the function the
// CPU's fill calls, so a seed and offset give the CPU's numbers. Uniform and integer draws match
// bit for bit; normal draws match up to the last ulp of log and cos, which CUDA's math library
// and the host's libm may round apart.
#include "../tensor/random_sample.h"
#include "cuda_kernels.h"
#include "cuda_launch.cuh"

namespace mg::cuda {
namespace {

template <typename T>
__global__ void random_kernel(T* out, int64_t n, RandomKind kind, uint64_t seed, uint64_t offset, double a, double b) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = philox::sample<T>(kind, seed, offset + static_cast<uint64_t>(i), a, b);
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
