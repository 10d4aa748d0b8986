// Philox fill of a contiguous tensor; each sample is ../random_sample.h's (shared with CUDA).
#include "../random_sample.h"
#include "cpu_kernels.h"
#include "parallel.h"

namespace mg::cpu {

void random(const Tensor& dst, RandomKind kind, uint64_t seed, uint64_t offset, double a, double b) {
  dispatch_dtype(dst.dtype(), [&]<typename T>() {
    T* out = dst.data_ptr<T>();
    // Costlier than a copy per element: go parallel earlier.
    parallel_for(dst.numel(), 8, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        out[i] = philox::sample<T>(kind, seed, offset + static_cast<uint64_t>(i), a, b);
    });
  });
}

}  // namespace mg::cpu
