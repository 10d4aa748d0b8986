// GEMM throughput (GFLOP/s) of metagrad beside OpenBLAS, part of bench_kernels.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include <metagrad/metagrad.h>

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

}  // namespace
