#include "cuda_device_info.h"

#include <cuda_runtime.h>

#include <cstdio>

namespace mg {
namespace {

std::string version_text(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }

}  // namespace

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

std::string cuda_device_description(int index) {
  cudaDeviceProp p{};
  const cudaError_t err = cudaGetDeviceProperties(&p, index);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return "cuda:" + std::to_string(index) + " (cannot be queried: " + cudaGetErrorString(err) + ")";
  }
  char memory[32];
  std::snprintf(memory, sizeof memory, "%.1f GiB", static_cast<double>(p.totalGlobalMem) / (1 << 30));
  return "cuda:" + std::to_string(index) + " " + p.name + ", compute " + std::to_string(p.major) + "." +
         std::to_string(p.minor) + ", " + std::to_string(p.multiProcessorCount) + " SMs, " + memory;
}

std::string cuda_versions() {
  int driver = 0, runtime = 0;
  if (cudaDriverGetVersion(&driver) != cudaSuccess) (void)cudaGetLastError();
  if (cudaRuntimeGetVersion(&runtime) != cudaSuccess) (void)cudaGetLastError();
  return "driver " + (driver > 0 ? version_text(driver) : std::string("none")) + ", runtime " + version_text(runtime);
}

}  // namespace mg
