#pragma once
// Launch helpers shared by the kernel files: grid sizes for grid-stride loops, the stream of a
// tensor's device, and a launch check that names the op.
#include <algorithm>
#include <cstdint>

#include "../tensor/tensor.h"
#include "cuda_check.h"
#include "cuda_context.h"

namespace mg::cuda {

inline constexpr int kThreads = 256;

// Blocks for n work items at kThreads per block. Grid-stride loops cover the rest past the cap,
// which is far beyond what fills the device.
inline unsigned blocks_for(int64_t n, int per_thread = 1) {
  const int64_t per_block = int64_t{kThreads} * per_thread;
  const int64_t blocks = (n + per_block - 1) / per_block;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, int64_t{1} << 20));
}

inline cudaStream_t stream_of(const Tensor& t) { return stream_for(t.device().index); }

template <typename T>
T* ptr(const Tensor& t) {
  return static_cast<T*>(t.raw_data());
}

}  // namespace mg::cuda
