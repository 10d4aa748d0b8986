// Large-kernel throughput: GEMM against OpenBLAS and the core's FMA peak, elementwise add and
// softmax against memory bandwidth (a plain memcpy stream). Ratios go in bench/RESULTS.md.
//   OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ./bench_kernels --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include <metagrad/metagrad.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MG_BENCH_X86 1
#endif

#ifdef MG_BENCH_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace {

using mg::Tensor;

// ---- GEMM ---------------------------------------------------------------------------------

void set_gemm_counters(benchmark::State& state, int64_t n) {
  const double flops = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

template <mg::DType D>
void BM_mg_gemm(benchmark::State& state) {
  const int64_t n = state.range(0);
  mg::NoGradGuard no_grad;
  mg::Generator gen(1);
  const Tensor a = mg::randn({n, n}, D, mg::kCPU, &gen);
  const Tensor b = mg::randn({n, n}, D, mg::kCPU, &gen);
  for (auto _ : state) {
    Tensor c = mg::matmul(a, b);
    benchmark::DoNotOptimize(c);
  }
  set_gemm_counters(state, n);
}
BENCHMARK(BM_mg_gemm<mg::kFloat32>)->Name("sgemm/mg")->Arg(128)->Arg(256)->Arg(512)->Arg(1024)->UseRealTime();
BENCHMARK(BM_mg_gemm<mg::kFloat64>)->Name("dgemm/mg")->Arg(128)->Arg(256)->Arg(512)->Arg(1024)->UseRealTime();

#ifdef MG_BENCH_HAVE_OPENBLAS
void BM_openblas_sgemm(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  std::vector<float> a(static_cast<size_t>(n) * n, 0.5f), b(a.size(), 0.25f), c(a.size());
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f,
                c.data(), n);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_gemm_counters(state, n);
}
void BM_openblas_dgemm(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  std::vector<double> a(static_cast<size_t>(n) * n, 0.5), b(a.size(), 0.25), c(a.size());
  for (auto _ : state) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, a.data(), n, b.data(), n, 0.0,
                c.data(), n);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_gemm_counters(state, n);
}
BENCHMARK(BM_openblas_sgemm)->Name("sgemm/openblas")->Arg(128)->Arg(256)->Arg(512)->Arg(1024)->UseRealTime();
BENCHMARK(BM_openblas_dgemm)->Name("dgemm/openblas")->Arg(128)->Arg(256)->Arg(512)->Arg(1024)->UseRealTime();
#endif

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

// ---- Memory-bound: elementwise add, stream copy, softmax ----------------------------------

constexpr int64_t kStreamN = int64_t{16} << 20;  // 16M floats = 64 MiB per array

void BM_mg_add(benchmark::State& state) {
  mg::NoGradGuard no_grad;
  mg::Generator gen(2);
  const Tensor a = mg::randn({kStreamN}, mg::kFloat32, mg::kCPU, &gen);
  const Tensor b = mg::randn({kStreamN}, mg::kFloat32, mg::kCPU, &gen);
  for (auto _ : state) {
    Tensor c = mg::add(a, b);
    benchmark::DoNotOptimize(c);
  }
  // Read a, read b, write c (the write-allocate read of c is not counted).
  state.counters["GB/s"] = benchmark::Counter(3.0 * 4.0 * static_cast<double>(kStreamN) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_mg_add)->Name("add_f32_16M/mg")->UseRealTime();

void BM_memcpy_stream(benchmark::State& state) {
  std::vector<float> src(static_cast<size_t>(kStreamN), 1.0f), dst(static_cast<size_t>(kStreamN), 0.0f);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), src.size() * sizeof(float));
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  // Read src, write dst.
  state.counters["GB/s"] = benchmark::Counter(2.0 * 4.0 * static_cast<double>(kStreamN) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_memcpy_stream)->Name("copy_f32_16M/memcpy")->UseRealTime();

void BM_mg_softmax(benchmark::State& state) {
  mg::NoGradGuard no_grad;
  mg::Generator gen(3);
  const int64_t rows = 4096, cols = 1024;
  const Tensor x = mg::randn({rows, cols}, mg::kFloat32, mg::kCPU, &gen);
  for (auto _ : state) {
    Tensor y = mg::softmax(x, 1);
    benchmark::DoNotOptimize(y);
  }
  // Read x, write y.
  state.counters["GB/s"] = benchmark::Counter(2.0 * 4.0 * static_cast<double>(rows * cols) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_mg_softmax)->Name("softmax_f32_4096x1024/mg")->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
