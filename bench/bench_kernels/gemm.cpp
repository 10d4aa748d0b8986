// GEMM throughput (GFLOP/s) of metagrad beside OpenBLAS, part of bench_kernels: square sgemm and
// dgemm, a transposed operand (A^T B, packed without a copy) and the batched small products of
// meta-learning (25 tasks x (10x40 @ 40x40): one batched matmul against 25 cblas calls).
// MG_GEMM_KERNEL=avx512|avx2|generic picks metagrad's micro-kernels; OPENBLAS_CORETYPE OpenBLAS's.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include <metagrad/metagrad.h>

#ifdef MG_BENCH_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace {

using mg::Tensor;

void set_gemm_counters(benchmark::State& state, double flops_per_iteration) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_per_iteration * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

double square_flops(int64_t n) {
  return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
}

// ---- square and transposed GEMM ------------------------------------------------------------

template <mg::DType D, bool TransA>
void BM_mg_gemm(benchmark::State& state) {
  const int64_t n = state.range(0);
  mg::NoGradGuard no_grad;
  mg::Generator gen(1);
  const Tensor a = TransA ? mg::randn({n, n}, D, mg::kCPU, &gen).transpose(0, 1) : mg::randn({n, n}, D, mg::kCPU, &gen);
  const Tensor b = mg::randn({n, n}, D, mg::kCPU, &gen);
  for (auto _ : state) {
    Tensor c = mg::matmul(a, b);
    benchmark::DoNotOptimize(c);
  }
  set_gemm_counters(state, square_flops(n));
}

void square_sizes(benchmark::internal::Benchmark* b) {
  for (int64_t n : {128, 256, 512, 1024, 2048}) b->Arg(n);
  b->UseRealTime();
}
BENCHMARK(BM_mg_gemm<mg::kFloat32, false>)->Name("sgemm/mg")->Apply(square_sizes);
BENCHMARK(BM_mg_gemm<mg::kFloat64, false>)->Name("dgemm/mg")->Apply(square_sizes);
BENCHMARK(BM_mg_gemm<mg::kFloat32, true>)->Name("sgemm_tn/mg")->Arg(1024)->UseRealTime();

#ifdef MG_BENCH_HAVE_OPENBLAS
template <typename T, bool TransA>
void BM_openblas_gemm(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  std::vector<T> a(static_cast<size_t>(n) * n, T(0.5)), b(a.size(), T(0.25)), c(a.size());
  const CBLAS_TRANSPOSE ta = TransA ? CblasTrans : CblasNoTrans;
  for (auto _ : state) {
    if constexpr (sizeof(T) == 4) {
      cblas_sgemm(CblasRowMajor, ta, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    } else {
      cblas_dgemm(CblasRowMajor, ta, CblasNoTrans, n, n, n, 1.0, a.data(), n, b.data(), n, 0.0, c.data(), n);
    }
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_gemm_counters(state, square_flops(n));
}
BENCHMARK(BM_openblas_gemm<float, false>)->Name("sgemm/openblas")->Apply(square_sizes);
BENCHMARK(BM_openblas_gemm<double, false>)->Name("dgemm/openblas")->Apply(square_sizes);
BENCHMARK(BM_openblas_gemm<float, true>)->Name("sgemm_tn/openblas")->Arg(1024)->UseRealTime();
#endif

// ---- batched small GEMM (per-task linear layer of a meta-batch) ------------------------------

constexpr int64_t kTasks = 25, kRows = 10, kIn = 40, kOut = 40;
constexpr double kSmallFlops = 2.0 * kTasks * kRows * kIn * kOut;

// One [25,10,40] @ [25,40,40] call, or with a weight shared by all tasks: [25,10,40] @ [40,40].
template <bool SharedWeight>
void BM_mg_small_batched(benchmark::State& state) {
  mg::NoGradGuard no_grad;
  mg::Generator gen(1);
  const Tensor x = mg::randn({kTasks, kRows, kIn}, mg::kFloat32, mg::kCPU, &gen);
  const Tensor w = SharedWeight ? mg::randn({kIn, kOut}, mg::kFloat32, mg::kCPU, &gen)
                                : mg::randn({kTasks, kIn, kOut}, mg::kFloat32, mg::kCPU, &gen);
  for (auto _ : state) {
    Tensor y = mg::matmul(x, w);
    benchmark::DoNotOptimize(y);
  }
  set_gemm_counters(state, kSmallFlops);
}
BENCHMARK(BM_mg_small_batched<false>)->Name("sgemm_small_batched/mg");
BENCHMARK(BM_mg_small_batched<true>)->Name("sgemm_small_batched_shared_w/mg");

// The per-task linear layer as it runs: x [25,10,40] @ W^T with W [25,40,40] in PyTorch's
// [out, in] layout, so B is read column by column (packing transposes it).
void BM_mg_small_batched_wt(benchmark::State& state) {
  mg::NoGradGuard no_grad;
  mg::Generator gen(1);
  const Tensor x = mg::randn({kTasks, kRows, kIn}, mg::kFloat32, mg::kCPU, &gen);
  const Tensor w = mg::randn({kTasks, kOut, kIn}, mg::kFloat32, mg::kCPU, &gen);
  for (auto _ : state) {
    Tensor y = mg::matmul(x, mg::transpose(w, -1, -2));
    benchmark::DoNotOptimize(y);
  }
  set_gemm_counters(state, kSmallFlops);
}
BENCHMARK(BM_mg_small_batched_wt)->Name("sgemm_small_batched_wt/mg");

#ifdef MG_BENCH_HAVE_OPENBLAS
// 25 cblas_sgemm calls, one per task; TransposedW: W in the [out, in] layout, read as W^T.
template <bool TransposedW>
void BM_openblas_small_batched(benchmark::State& state) {
  std::vector<float> x(kTasks * kRows * kIn, 0.5f), w(kTasks * kIn * kOut, 0.25f), y(kTasks * kRows * kOut);
  for (auto _ : state) {
    for (int64_t t = 0; t < kTasks; ++t)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, TransposedW ? CblasTrans : CblasNoTrans, kRows, kOut, kIn, 1.0f,
                  x.data() + t * kRows * kIn, kIn, w.data() + t * kIn * kOut, TransposedW ? kIn : kOut, 0.0f,
                  y.data() + t * kRows * kOut, kOut);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_gemm_counters(state, kSmallFlops);
}
BENCHMARK(BM_openblas_small_batched<false>)->Name("sgemm_small_batched/openblas");
BENCHMARK(BM_openblas_small_batched<true>)->Name("sgemm_small_batched_wt/openblas");
#endif

}  // namespace
