// Memory-bound kernels (elementwise, softmax) against a plain memcpy stream, part of bench_kernels.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include <metagrad/metagrad.h>

namespace {

using mg::Tensor;

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
