// Portable GEMM micro-kernels: plain loops with constant trip counts that the compiler unrolls
// and vectorises for the baseline instruction set (16 SSE registers: a 4x8 float tile is 8
// accumulators + 2 for B + 1 broadcast of A). Used on non-x86 targets and old x86 CPUs.
#include "cpu_gemm_kernels.h"
#include "cpu_gemm_pack.h"

namespace mg::cpu {
namespace {

template <typename T, int64_t MR, int64_t NR>
void tile(int64_t kc, const T* __restrict a, const T* __restrict b, int64_t ldb, T* c, int64_t ldc, int64_t mr,
          int64_t nr, bool accumulate) {
  T acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k, a += MR, b += ldb)
    for (int64_t i = 0; i < MR; ++i)
      for (int64_t j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];
  for (int64_t i = 0; i < mr; ++i) {
    T* ci = c + i * ldc;
    if (accumulate) {
      for (int64_t j = 0; j < nr; ++j) ci[j] += acc[i][j];
    } else {
      for (int64_t j = 0; j < nr; ++j) ci[j] = acc[i][j];
    }
  }
}

const GemmKernels kGeneric{
    "generic",
    {4, 8, 64, 256, 512, &tile<float, 4, 8>, false, &pack_a_panels<float, 4>, &pack_b_panels<float, 8>, nullptr},
    {4, 4, 64, 256, 512, &tile<double, 4, 4>, false, &pack_a_panels<double, 4>, &pack_b_panels<double, 4>, nullptr},
};

}  // namespace

const GemmKernels* gemm_kernels_generic() { return &kGeneric; }

}  // namespace mg::cpu
