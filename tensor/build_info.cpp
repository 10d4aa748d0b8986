#include "build_info.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef MG_BUILD_TYPE
#define MG_BUILD_TYPE ""  // set by CMake for this file; empty when built some other way
#endif

#ifdef MG_HAVE_CUDA
namespace mg {
// cuda/cuda_device_info.cu; declared here so tensor/ does not include cuda/
int cuda_device_count();
std::string cuda_device_description(int index);
std::string cuda_versions();
}  // namespace mg
#endif

namespace mg {
namespace {

std::string simd_level() {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "avx512f";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2+fma";
#endif
  return "portable";
}

std::string compiler_name() {
#if defined(__clang__)
  return "Clang " __clang_version__;
#elif defined(__GNUC__)
  return "GCC " + std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__) + "." +
         std::to_string(__GNUC_PATCHLEVEL__);
#elif defined(_MSC_VER)
  return "MSVC " + std::to_string(_MSC_VER);
#else
  return "unknown";
#endif
}

}  // namespace

BuildInfo build_info() {
  BuildInfo info{};
#ifdef MG_HAVE_CUDA
  info.cuda_compiled = true;
  info.cuda_devices = cuda_device_count();
  info.cuda_versions = cuda_versions();
  for (int i = 0; i < info.cuda_devices; ++i) info.cuda_device_lines.push_back(cuda_device_description(i));
#else
  info.cuda_compiled = false;
  info.cuda_devices = 0;
#endif
#ifdef _OPENMP
  info.openmp = true;
  info.omp_max_threads = omp_get_max_threads();
#else
  info.openmp = false;
  info.omp_max_threads = 1;
#endif
  info.simd = simd_level();
  info.compiler = compiler_name();
  info.build_type = MG_BUILD_TYPE;
  return info;
}

}  // namespace mg
