#pragma once
// What this build of metagrad was compiled with, and what the machine it runs on offers.
#include <string>
#include <vector>

namespace mg {

struct BuildInfo {
  bool cuda_compiled;      // built with the CUDA backend (MG_HAVE_CUDA)
  int cuda_devices;        // CUDA devices visible now; 0 without CUDA, driver or device
  std::string cuda_versions;                   // "driver 13.0, runtime 13.0"; empty without CUDA
  std::vector<std::string> cuda_device_lines;  // "cuda:0 NVIDIA H200, compute 9.0, 132 SMs, 139.8 GiB"
  bool openmp;             // built with OpenMP
  int omp_max_threads;     // omp_get_max_threads(), 1 without OpenMP
  std::string simd;        // CPU kernels this machine can run: "avx512f", "avx2+fma" or "portable"
  std::string compiler;    // e.g. "GCC 12.2.0"
  std::string build_type;  // CMake configuration, e.g. "Release"
};

BuildInfo build_info();

}  // namespace mg
