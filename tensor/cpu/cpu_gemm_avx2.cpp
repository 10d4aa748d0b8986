// AVX2 + FMA GEMM micro-kernels: 6 x 2 ymm accumulators, 2 loads of B and one broadcast of A per
// k step, 15 of the 16 ymm registers. Edge tiles run an instantiation with fewer rows, and with
// fewer columns one that loads only the vectors holding them, the last under a mask; they store
// whole vectors where they fit and the rest through a small local copy (masked loads are cheap,
// masked stores are microcode on AMD). A small float B with unit column stride is read in place
// (direct_b), as the AVX-512 kernels do: packing it cost about as much as the product.
#include "cpu_gemm_kernels.h"
#include "cpu_gemm_pack.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include <array>
#include <utility>

#define MG_AVX2 __attribute__((target("avx2,fma")))

namespace mg::cpu {
namespace {

template <typename T>
struct Vec;

template <>
struct Vec<float> {
  using Reg = __m256;
  static constexpr int64_t kWidth = 8;
  MG_AVX2 static Reg zero() { return _mm256_setzero_ps(); }
  MG_AVX2 static Reg loadu(const float* p) { return _mm256_loadu_ps(p); }
  MG_AVX2 static Reg broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  // The first `count` lanes, zeros after; never reads past them (masked loads are fast on AMD
  // too, unlike masked stores).
  MG_AVX2 static Reg load_first(const float* p, int64_t count) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), lanes));
  }
  MG_AVX2 static Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  MG_AVX2 static Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  MG_AVX2 static void storeu(float* p, Reg v) { _mm256_storeu_ps(p, v); }
};

template <>
struct Vec<double> {
  using Reg = __m256d;
  static constexpr int64_t kWidth = 4;
  MG_AVX2 static Reg zero() { return _mm256_setzero_pd(); }
  MG_AVX2 static Reg loadu(const double* p) { return _mm256_loadu_pd(p); }
  MG_AVX2 static Reg broadcast(const double* p) { return _mm256_broadcast_sd(p); }
  MG_AVX2 static Reg load_first(const double* p, int64_t count) {
    const __m256i lanes = _mm256_setr_epi64x(0, 1, 2, 3);
    return _mm256_maskload_pd(p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(count), lanes));
  }
  MG_AVX2 static Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_pd(a, b, c); }
  MG_AVX2 static Reg add(Reg a, Reg b) { return _mm256_add_pd(a, b); }
  MG_AVX2 static void storeu(double* p, Reg v) { _mm256_storeu_pd(p, v); }
};

// M of the MR rows (M < MR only on the bottom edge), nr of the NR columns. A packed B panel is
// zero-padded to NR columns; B read in place (ldb its row stride, float only) has just nr, so
// an edge tile loads only the NVA vectors holding columns, the last one partly when Partial.
// A is a packed panel, or with DirectA A itself, element (i, k) at a + i * ars + k * aks.
template <typename T, int64_t MR, int64_t NR, int64_t M, int64_t NVA, bool Partial, bool DirectA>
MG_AVX2 void tile_rows(int64_t kc, const T* a, int64_t ars, int64_t aks, const T* b, int64_t ldb, T* c, int64_t ldc,
                       int64_t nr, bool accumulate) {
  using V = Vec<T>;
  const int64_t rs = DirectA ? ars : 1, ks = DirectA ? aks : MR;
  constexpr int64_t NV = NVA;
  const int64_t last_lanes = nr - (NV - 1) * V::kWidth;
  typename V::Reg acc[M][NV];
#pragma GCC unroll 8
  for (int64_t i = 0; i < M; ++i) {
#pragma GCC unroll 4
    for (int64_t j = 0; j < NV; ++j) acc[i][j] = V::zero();
  }
  // The tile's rows of C sit a row stride apart; with a power-of-two stride they share cache
  // sets and are gone by the time the k loop ends, so their loads start before it.
#pragma GCC unroll 8
  for (int64_t i = 0; i < M; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
  }

#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k, a += ks, b += ldb) {
    typename V::Reg bv[NV];
#pragma GCC unroll 4
    for (int64_t j = 0; j < NV; ++j) {
      if constexpr (Partial) {
        bv[j] = j == NV - 1 ? V::load_first(b + j * V::kWidth, last_lanes) : V::loadu(b + j * V::kWidth);
      } else {
        bv[j] = V::loadu(b + j * V::kWidth);
      }
    }
#pragma GCC unroll 8
    for (int64_t i = 0; i < M; ++i) {
      const typename V::Reg av = V::broadcast(a + i * rs);
#pragma GCC unroll 4
      for (int64_t j = 0; j < NV; ++j) acc[i][j] = V::fma(av, bv[j], acc[i][j]);
    }
  }

  if (nr == NV * V::kWidth) {
#pragma GCC unroll 8
    for (int64_t i = 0; i < M; ++i) {
      T* ci = c + i * ldc;
#pragma GCC unroll 4
      for (int64_t j = 0; j < NV; ++j) {
        T* p = ci + j * V::kWidth;
        V::storeu(p, accumulate ? V::add(V::loadu(p), acc[i][j]) : acc[i][j]);
      }
    }
    return;
  }
  // Partial columns: whole vectors where they fit, the last partial one through a local copy.
#pragma GCC unroll 8
  for (int64_t i = 0; i < M; ++i) {
    T* ci = c + i * ldc;
#pragma GCC unroll 4
    for (int64_t j = 0; j < NV; ++j) {
      T* p = ci + j * V::kWidth;
      const int64_t left = nr - j * V::kWidth;
      if (left >= V::kWidth) {
        V::storeu(p, accumulate ? V::add(V::loadu(p), acc[i][j]) : acc[i][j]);
      } else if (left > 0) {
        alignas(32) T part[V::kWidth];
        V::storeu(part, acc[i][j]);
        for (int64_t q = 0; q < left; ++q) p[q] = accumulate ? p[q] + part[q] : part[q];
      }
    }
  }
}

template <typename T, int64_t MR, int64_t NR>
struct Tile {
  using Fn = void (*)(int64_t, const T*, int64_t, int64_t, const T*, int64_t, T*, int64_t, int64_t, bool);
  template <int64_t NVA, bool Partial, bool DirectA, size_t... I>
  static constexpr std::array<Fn, MR> table(std::index_sequence<I...>) {
    return {&tile_rows<T, MR, NR, static_cast<int64_t>(I) + 1, NVA, Partial, DirectA>...};
  }
  template <int64_t NVA, bool Partial, bool DirectA>
  static constexpr std::array<Fn, MR> kByRows = table<NVA, Partial, DirectA>(std::make_index_sequence<MR>{});

  // Edge tiles read only their columns whether B is packed or not: a B read in place may end
  // right after them.
  template <bool DirectA>
  static void dispatch(int64_t kc, const T* a, int64_t ars, int64_t aks, const T* b, int64_t ldb, T* c, int64_t ldc,
                       int64_t mr, int64_t nr, bool accumulate) {
    const auto rows = static_cast<size_t>(mr - 1);
    constexpr int64_t W = Vec<T>::kWidth;
    static_assert(NR == 2 * W, "edge dispatch below assumes two vectors per row");
    const auto fn = nr == NR  ? kByRows<2, false, DirectA>[rows]
                    : nr < W  ? kByRows<1, true, DirectA>[rows]
                    : nr == W ? kByRows<1, false, DirectA>[rows]
                              : kByRows<2, true, DirectA>[rows];
    fn(kc, a, ars, aks, b, ldb, c, ldc, nr, accumulate);
  }
  static void run(int64_t kc, const T* a, const T* b, int64_t ldb, T* c, int64_t ldc, int64_t mr, int64_t nr,
                  bool accumulate) {
    dispatch<false>(kc, a, 1, MR, b, ldb, c, ldc, mr, nr, accumulate);
  }
  static void run_direct_a(int64_t kc, const T* a, int64_t ars, int64_t aks, const T* b, int64_t ldb, T* c, int64_t ldc,
                           int64_t mr, int64_t nr, bool accumulate) {
    dispatch<true>(kc, a, ars, aks, b, ldb, c, ldc, mr, nr, accumulate);
  }
};

const GemmKernels kAvx2{
    "avx2",
    {6, 16, 6 * 32, 256, 4096, &Tile<float, 6, 16>::run, true, &pack_a_panels_f32_avx<6>, &pack_b_panels_f32_avx<16>,
     &Tile<float, 6, 16>::run_direct_a},
    {6, 8, 6 * 16, 256, 2048, &Tile<double, 6, 8>::run, false, &pack_a_panels<double, 6>, &pack_b_panels<double, 8>,
     nullptr},
};

}  // namespace

const GemmKernels* gemm_kernels_avx2() {
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return supported ? &kAvx2 : nullptr;
}

}  // namespace mg::cpu

#else

namespace mg::cpu {
const GemmKernels* gemm_kernels_avx2() { return nullptr; }
}  // namespace mg::cpu

#endif
