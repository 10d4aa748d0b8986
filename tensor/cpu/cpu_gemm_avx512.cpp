// AVX-512 GEMM micro-kernels. Each k step broadcasts MR values of the packed A panel and multiplies
// them with NR/W vectors of the packed B panel into MR x NR/W accumulators: 28 of the 32 zmm
// registers, enough independent FMA chains to cover latency x throughput (4 cycles x 2 pipes) on
// current cores. Edge tiles run an instantiation with fewer rows (no wasted FMAs on the padding)
// and write their partial columns with masked loads/stores. A small float A is read in place
// (tile_direct_a, the same tiles with A's own strides), as the AVX2 kernels do.
#include "cpu_gemm_kernels.h"
#include "cpu_gemm_pack.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include <array>
#include <utility>

#define MG_AVX512 __attribute__((target("avx512f,avx2,fma")))

namespace mg::cpu {
namespace {

template <typename T>
struct Vec;

template <>
struct Vec<float> {
  using Reg = __m512;
  using Mask = __mmask16;
  static constexpr int64_t kWidth = 16;
  MG_AVX512 static Reg zero() { return _mm512_setzero_ps(); }
  MG_AVX512 static Reg load(const float* p) { return _mm512_load_ps(p); }
  MG_AVX512 static Reg loadu(const float* p) { return _mm512_loadu_ps(p); }
  MG_AVX512 static Reg broadcast(const float* p) { return _mm512_set1_ps(*p); }
  MG_AVX512 static Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  MG_AVX512 static Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  MG_AVX512 static void storeu(float* p, Reg v) { _mm512_storeu_ps(p, v); }
  MG_AVX512 static Reg maskz_loadu(Mask m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  MG_AVX512 static void mask_storeu(float* p, Mask m, Reg v) { _mm512_mask_storeu_ps(p, m, v); }
};

template <>
struct Vec<double> {
  using Reg = __m512d;
  using Mask = __mmask8;
  static constexpr int64_t kWidth = 8;
  MG_AVX512 static Reg zero() { return _mm512_setzero_pd(); }
  MG_AVX512 static Reg load(const double* p) { return _mm512_load_pd(p); }
  MG_AVX512 static Reg loadu(const double* p) { return _mm512_loadu_pd(p); }
  MG_AVX512 static Reg broadcast(const double* p) { return _mm512_set1_pd(*p); }
  MG_AVX512 static Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_pd(a, b, c); }
  MG_AVX512 static Reg add(Reg a, Reg b) { return _mm512_add_pd(a, b); }
  MG_AVX512 static void storeu(double* p, Reg v) { _mm512_storeu_pd(p, v); }
  MG_AVX512 static Reg maskz_loadu(Mask m, const double* p) { return _mm512_maskz_loadu_pd(m, p); }
  MG_AVX512 static void mask_storeu(double* p, Mask m, Reg v) { _mm512_mask_storeu_pd(p, m, v); }
};

// Column masks of the partial vectors of an nr-column edge tile.
template <typename V, int64_t NV>
MG_AVX512 void column_masks(int64_t nr, typename V::Mask* mask) {
  for (int64_t j = 0; j < NV; ++j) {
    const int64_t cols = std::clamp<int64_t>(nr - j * V::kWidth, 0, V::kWidth);
    mask[j] = static_cast<typename V::Mask>((uint64_t{1} << cols) - 1);
  }
}

// acc += the kc-deep product of M rows of A and the B panel; Masked reads only the columns in
// mask (B may be the unpadded matrix itself). A is the packed panel or, with DirectA, A itself:
// element (i, k) at a + i * ars + k * aks (the packed panel's strides are constants).
template <typename T, int64_t MR, int64_t M, int64_t NV, bool Masked, bool DirectA>
MG_AVX512 void multiply(int64_t kc, const T* a, int64_t ars, int64_t aks, const T* b, int64_t ldb,
                        const typename Vec<T>::Mask* mask, typename Vec<T>::Reg (&acc)[M][NV]) {
  using V = Vec<T>;
  const int64_t rs = DirectA ? ars : 1, ks = DirectA ? aks : MR;
  // Unrolled by 4: the pointer steps fold into the loads' offsets. sgemm n = 2048, one thread:
  // 194.5 -> 200.3 GFLOP/s, n = 1024: 197.6 -> 199.7 (medians of 5 alternated runs).
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k, a += ks, b += ldb) {
    typename V::Reg bv[NV];
#pragma GCC unroll 4
    for (int64_t j = 0; j < NV; ++j)
      bv[j] = Masked ? V::maskz_loadu(mask[j], b + j * V::kWidth) : V::loadu(b + j * V::kWidth);
#pragma GCC unroll 16
    for (int64_t i = 0; i < M; ++i) {
      const typename V::Reg av = V::broadcast(a + i * rs);
#pragma GCC unroll 4
      for (int64_t j = 0; j < NV; ++j) acc[i][j] = V::fma(av, bv[j], acc[i][j]);
    }
  }
}

// An edge tile of nr < NR columns: only the NVA = ceil(nr / width) vectors holding columns are
// loaded, multiplied and stored, under masks.
template <typename T, int64_t MR, int64_t M, int64_t NVA, bool DirectA>
MG_AVX512 void edge_tile(int64_t kc, const T* a, int64_t rs, int64_t ks, const T* b, int64_t ldb, T* c, int64_t ldc,
                         int64_t nr, bool accumulate) {
  using V = Vec<T>;
  typename V::Mask mask[NVA];
  column_masks<V, NVA>(nr, mask);
  typename V::Reg acc[M][NVA];
#pragma GCC unroll 16
  for (int64_t i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int64_t j = 0; j < NVA; ++j) acc[i][j] = V::zero();
  multiply<T, MR, M, NVA, true, DirectA>(kc, a, rs, ks, b, ldb, mask, acc);
#pragma GCC unroll 16
  for (int64_t i = 0; i < M; ++i) {
    T* ci = c + i * ldc;
#pragma GCC unroll 4
    for (int64_t j = 0; j < NVA; ++j) {
      T* p = ci + j * V::kWidth;
      const typename V::Reg v = accumulate ? V::add(V::maskz_loadu(mask[j], p), acc[i][j]) : acc[i][j];
      V::mask_storeu(p, mask[j], v);
    }
  }
}

// M of the MR rows (M < MR only on the bottom edge), nr of the NR columns; A as for multiply.
template <typename T, int64_t MR, int64_t NR, int64_t M, bool DirectA>
MG_AVX512 void tile_rows(int64_t kc, const T* a, int64_t rs, int64_t ks, const T* b, int64_t ldb, T* c, int64_t ldc,
                         int64_t nr, bool accumulate) {
  using V = Vec<T>;
  constexpr int64_t NV = NR / V::kWidth;
  static_assert(NV == 2, "edge dispatch below assumes two vectors per row");
  if (nr < NR) {
    if (nr > V::kWidth) {
      edge_tile<T, MR, M, 2, DirectA>(kc, a, rs, ks, b, ldb, c, ldc, nr, accumulate);
    } else {
      edge_tile<T, MR, M, 1, DirectA>(kc, a, rs, ks, b, ldb, c, ldc, nr, accumulate);
    }
    return;
  }
  typename V::Reg acc[M][NV];
#pragma GCC unroll 16
  for (int64_t i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int64_t j = 0; j < NV; ++j) acc[i][j] = V::zero();
  // The tile of C is touched only after the k loop: fetching it 32 depth steps (some 450 cycles)
  // before the end hides a likely cache miss per row behind the FMAs. Fetched at the start, as
  // before, its rows (a multiple of 4 KiB apart for n = 1024, 2048: the same L1 sets) were
  // evicted again by then; sgemm n = 512 / 1024, one thread: 202.1 / 200.3 -> 203.9 / 203.1
  // GFLOP/s (medians of 5 alternated runs).
  const int64_t tail = std::min<int64_t>(kc, 32);
  multiply<T, MR, M, NV, false, DirectA>(kc - tail, a, rs, ks, b, ldb, nullptr, acc);
#pragma GCC unroll 16
  for (int64_t i = 0; i < M; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
  }
  multiply<T, MR, M, NV, false, DirectA>(tail, a + (kc - tail) * ks, rs, ks, b + (kc - tail) * ldb, ldb, nullptr, acc);
#pragma GCC unroll 16
  for (int64_t i = 0; i < M; ++i) {
    T* ci = c + i * ldc;
#pragma GCC unroll 4
    for (int64_t j = 0; j < NV; ++j) {
      T* p = ci + j * V::kWidth;
      V::storeu(p, accumulate ? V::add(V::loadu(p), acc[i][j]) : acc[i][j]);
    }
  }
}

template <typename T, int64_t MR, int64_t NR>
struct Tile {
  using Fn = void (*)(int64_t, const T*, int64_t, int64_t, const T*, int64_t, T*, int64_t, int64_t, bool);
  template <bool DirectA, size_t... I>
  static constexpr std::array<Fn, MR> table(std::index_sequence<I...>) {
    return {&tile_rows<T, MR, NR, static_cast<int64_t>(I) + 1, DirectA>...};
  }
  template <bool DirectA>
  static constexpr std::array<Fn, MR> kByRows = table<DirectA>(std::make_index_sequence<MR>{});

  static void run(int64_t kc, const T* a, const T* b, int64_t ldb, T* c, int64_t ldc, int64_t mr, int64_t nr,
                  bool accumulate) {
    kByRows<false>[static_cast<size_t>(mr - 1)](kc, a, 1, MR, b, ldb, c, ldc, nr, accumulate);
  }
  static void run_direct_a(int64_t kc, const T* a, int64_t ars, int64_t aks, const T* b, int64_t ldb, T* c, int64_t ldc,
                           int64_t mr, int64_t nr, bool accumulate) {
    kByRows<true>[static_cast<size_t>(mr - 1)](kc, a, ars, aks, b, ldb, c, ldc, nr, accumulate);
  }
};

// Sized on a Zen 5 core (48 KiB L1d, 1 MiB L2) and safe for 32 KiB L1s: a kc = 256 deep B panel
// (32 KiB) stays in L1 while mc x kc of A (336 KiB float, 336 KiB double) streams from L2.
// Measured: kc 384 and mc 168..504 within noise of these, kc 192 slower.
constexpr int64_t kMrF32 = 14, kNrF32 = 32;
constexpr int64_t kMrF64 = 14, kNrF64 = 16;

const GemmKernels kAvx512{
    "avx512",
    {kMrF32, kNrF32, 14 * 24, 256, 4096, &Tile<float, kMrF32, kNrF32>::run, true, &pack_a_panels_f32_avx<kMrF32>,
     &pack_b_panels_f32_avx<kNrF32>, &Tile<float, kMrF32, kNrF32>::run_direct_a},
    {kMrF64, kNrF64, 14 * 12, 256, 2048, &Tile<double, kMrF64, kNrF64>::run, true, &pack_a_panels<double, kMrF64>,
     &pack_b_panels<double, kNrF64>, nullptr},
};

}  // namespace

const GemmKernels* gemm_kernels_avx512() {
  static const bool supported =
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return supported ? &kAvx512 : nullptr;
}

}  // namespace mg::cpu

#else

namespace mg::cpu {
const GemmKernels* gemm_kernels_avx512() { return nullptr; }
}  // namespace mg::cpu

#endif
