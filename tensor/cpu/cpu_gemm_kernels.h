#pragma once
// The interface between the GEMM driver (cpu_gemm.cpp) and its instruction-set specific parts
// (cpu_gemm_avx512.cpp, cpu_gemm_avx2.cpp, cpu_gemm_generic.cpp). Each part compiles its
// micro-kernels with per-function target attributes, so the library runs on any x86-64 and the
// driver picks one table at run time.
#include <cstdint>

namespace mg::cpu {

template <typename T>
struct GemmKernel {
  int64_t mr, nr;      // register tile
  int64_t mc, kc, nc;  // cache blocks: mc x kc of A in L2, kc x nr of B in L1, kc x nc of B in L3
  // c[0..mr) x [0..nr) (row stride ldc) = or += (accumulate) the product of a packed A panel
  // (kc x this->mr, k-major) and a B panel whose k-th row starts at b + k * ldb: packed (ldb =
  // this->nr, zero-padded) or, when direct_b, B itself with unit column stride (only the nr
  // valid columns are read). mr and nr may be smaller than the tile.
  void (*tile)(int64_t kc, const T* a, const T* b, int64_t ldb, T* c, int64_t ldc, int64_t mr, int64_t nr,
               bool accumulate);
  bool direct_b;
  // Pack rows x depth of A (strides rs, ks) into this->mr-row panels, and depth x cols of B
  // (strides ks, cs) into this->nr-column panels; both k-major and zero-padded.
  void (*pack_a)(const T* a, int64_t rs, int64_t ks, int64_t rows, int64_t depth, T* dst);
  void (*pack_b)(const T* b, int64_t ks, int64_t cs, int64_t depth, int64_t cols, T* dst);
  // tile with A read in place, element (i, k) at a + i * ars + k * aks, for an A small enough
  // that packing it would cost about as much as the product; null where the set has none.
  void (*tile_direct_a)(int64_t kc, const T* a, int64_t ars, int64_t aks, const T* b, int64_t ldb, T* c, int64_t ldc,
                        int64_t mr, int64_t nr, bool accumulate);
};

struct GemmKernels {
  const char* name;
  GemmKernel<float> f32;
  GemmKernel<double> f64;
};

// Null when this CPU (or this build's target architecture) lacks the instructions.
const GemmKernels* gemm_kernels_avx512();
const GemmKernels* gemm_kernels_avx2();
const GemmKernels* gemm_kernels_generic();  // always available

}  // namespace mg::cpu
