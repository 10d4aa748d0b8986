#pragma once
// What this build of metagrad was compiled with, and what the machine it runs on offers.
#include <string>

namespace mg {

struct BuildInfo {
  bool cuda_compiled;      // built with the CUDA backend (MG_HAVE_CUDA)
  int cuda_devices;        // CUDA devices visible now; 0 without CUDA, driver or device
  bool openmp;             // built with OpenMP
  int omp_max_threads;     // omp_get_max_threads(), 1 without OpenMP
  std::string simd;        // CPU kernels this machine can run: "avx512f", "avx2+fma" or "portable"
  std::string compiler;    // e.g. "GCC 12.2.0"
  std::string build_type;  // CMake configuration, e.g. "Release"
};

BuildInfo build_info();

}  // namespace mg
