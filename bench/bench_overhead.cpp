// Per-op overhead (dispatch + tape record + backward) on tiny tensors, beside LibTorch in the
// same binary when it was found (MG_BENCH_HAVE_TORCH). Whole meta-steps: bench_meta.
//   OMP_NUM_THREADS=1 ./bench_overhead --benchmark_min_time=0.2
// Chain: x <- x * 1.0001 + 0.0 repeated 1,000 times on a [4] float32 leaf that requires grad:
// 2,000 ops per iteration; the "per_op" counter is seconds per op (lower is better).
#include <benchmark/benchmark.h>

#include <metagrad/metagrad.h>

#ifdef MG_BENCH_HAVE_TORCH
#include <torch/torch.h>
#endif

namespace {

using mg::Tensor;

constexpr int kChain = 1000;    // links
constexpr int kOpsPerLink = 2;  // mul, add

void set_per_op(benchmark::State& state, int ops_per_iteration) {
  state.counters["per_op"] =
      benchmark::Counter(static_cast<double>(ops_per_iteration),
                         benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// ---- metagrad chain ---------------------------------------------------------------------

void BM_mg_chain_nograd(benchmark::State& state) {
  mg::NoGradGuard no_grad;
  const Tensor x0 = mg::ones({4});
  for (auto _ : state) {
    Tensor x = x0;
    for (int i = 0; i < kChain; ++i) x = x * 1.0001 + 0.0;
    benchmark::DoNotOptimize(x);
  }
  set_per_op(state, kChain * kOpsPerLink);
}
BENCHMARK(BM_mg_chain_nograd)->Name("chain1000/mg/forward_nograd");

void BM_mg_chain_forward(benchmark::State& state) {
  const Tensor x0 = mg::ones({4}).requires_grad_();
  for (auto _ : state) {
    Tensor x = x0;
    for (int i = 0; i < kChain; ++i) x = x * 1.0001 + 0.0;
    benchmark::DoNotOptimize(x);
  }  // includes freeing the recorded graph
  set_per_op(state, kChain * kOpsPerLink);
}
BENCHMARK(BM_mg_chain_forward)->Name("chain1000/mg/forward_recording");

void BM_mg_chain_backward(benchmark::State& state) {
  const Tensor x0 = mg::ones({4}).requires_grad_();
  for (auto _ : state) {
    Tensor x = x0;
    for (int i = 0; i < kChain; ++i) x = x * 1.0001 + 0.0;
    x.sum().backward();
  }
  benchmark::DoNotOptimize(x0.grad());
  set_per_op(state, kChain * kOpsPerLink);
}
BENCHMARK(BM_mg_chain_backward)->Name("chain1000/mg/forward_backward");

#ifdef MG_BENCH_HAVE_TORCH
// ---- LibTorch reference -------------------------------------------------------------------

void BM_torch_chain_nograd(benchmark::State& state) {
  torch::NoGradGuard no_grad;
  const torch::Tensor x0 = torch::ones({4});
  for (auto _ : state) {
    torch::Tensor x = x0;
    for (int i = 0; i < kChain; ++i) x = x * 1.0001 + 0.0;
    benchmark::DoNotOptimize(x);
  }
  set_per_op(state, kChain * kOpsPerLink);
}
BENCHMARK(BM_torch_chain_nograd)->Name("chain1000/torch/forward_nograd");

void BM_torch_chain_forward(benchmark::State& state) {
  const torch::Tensor x0 = torch::ones({4}, torch::requires_grad());
  for (auto _ : state) {
    torch::Tensor x = x0;
    for (int i = 0; i < kChain; ++i) x = x * 1.0001 + 0.0;
    benchmark::DoNotOptimize(x);
  }
  set_per_op(state, kChain * kOpsPerLink);
}
BENCHMARK(BM_torch_chain_forward)->Name("chain1000/torch/forward_recording");

void BM_torch_chain_backward(benchmark::State& state) {
  const torch::Tensor x0 = torch::ones({4}, torch::requires_grad());
  for (auto _ : state) {
    torch::Tensor x = x0;
    for (int i = 0; i < kChain; ++i) x = x * 1.0001 + 0.0;
    x.sum().backward();
  }
  benchmark::DoNotOptimize(x0.grad());
  set_per_op(state, kChain * kOpsPerLink);
}
BENCHMARK(BM_torch_chain_backward)->Name("chain1000/torch/forward_backward");

#endif

}  // namespace

BENCHMARK_MAIN();
