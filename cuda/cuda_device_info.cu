#include "cuda_device_info.h"

#include <cuda_runtime.h>

namespace mg {

int cuda_device_count() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    // Clear the sticky error so later runtime calls do not report it again.
    (void)cudaGetLastError();
    return 0;
  }
  return count < 0 ? 0 : count;
}

}  // namespace mg
