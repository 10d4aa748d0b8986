// Large-kernel throughput: GEMM against OpenBLAS and the core's FMA peak (bench_kernels/gemm.cpp),
// elementwise and softmax against memory bandwidth (bench_kernels/memory_bound.cpp), and here the
// register-only FMA loop that measures the peak. Ratios go in bench/RESULTS.md.
//   OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ./bench_kernels --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MG_BENCH_X86 1
#endif

namespace {

// ---- FMA peak of one core (registers only) ------------------------------------------------
// 16 independent accumulators cover the FMA latency x throughput of current cores (4-5 cycles x
// 2 pipes). acc = acc * m + c with m < 1 stays finite, so no special values slow it down.

constexpr int64_t kFmaInner = 1024;  // iterations of the 16-FMA block per call

#ifdef MG_BENCH_X86
volatile float g_fma_m = 0.999999f;
volatile float g_fma_c = 1e-6f;

__attribute__((target("avx512f"))) float fma_block_avx512(int64_t blocks) {
  const __m512 m = _mm512_set1_ps(g_fma_m);  // volatile loads: no constant folding
  const __m512 c = _mm512_set1_ps(g_fma_c);
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  for (int64_t it = 0; it < blocks * kFmaInner; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(acc[i], m, c);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 16; ++i) s = _mm512_add_ps(s, acc[i]);
  // A store, not _mm512_reduce_add_ps: g++ 12's version trips -Wuninitialized at -O3.
  alignas(64) float out[16];
  _mm512_store_ps(out, s);
  float r = 0.0f;
  for (float v : out) r += v;
  return r;
}

__attribute__((target("avx2,fma"))) float fma_block_avx2(int64_t blocks) {
  const __m256 m = _mm256_set1_ps(g_fma_m);  // volatile loads: no constant folding
  const __m256 c = _mm256_set1_ps(g_fma_c);
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  for (int64_t it = 0; it < blocks * kFmaInner; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], m, c);
  }
  __m256 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  float r = 0.0f;
  for (float v : out) r += v;
  return r;
}

void BM_fma_peak_avx512(benchmark::State& state) {
  if (!__builtin_cpu_supports("avx512f")) {
    state.SkipWithError("no AVX-512F on this CPU");
    return;
  }
  const int64_t blocks = 64;
  for (auto _ : state) benchmark::DoNotOptimize(fma_block_avx512(blocks));
  const double flops = static_cast<double>(blocks * kFmaInner) * 16 * 16 * 2;
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
void BM_fma_peak_avx2(benchmark::State& state) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    state.SkipWithError("no AVX2+FMA on this CPU");
    return;
  }
  const int64_t blocks = 64;
  for (auto _ : state) benchmark::DoNotOptimize(fma_block_avx2(blocks));
  const double flops = static_cast<double>(blocks * kFmaInner) * 12 * 8 * 2;
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_fma_peak_avx512)->Name("fma_peak_f32/avx512");
BENCHMARK(BM_fma_peak_avx2)->Name("fma_peak_f32/avx2");
#endif

}  // namespace

BENCHMARK_MAIN();
