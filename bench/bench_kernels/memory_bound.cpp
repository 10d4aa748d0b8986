// Memory-bound kernels against copy and triad streams, part of bench_kernels: elementwise
// (add, mul, exp, GELU), softmax and log-softmax, fused layer norm, cross-entropy forward and
// backward, the fused Adam step, and (for scale) multi-head attention forward and backward.
// Every memory-bound row reports "GB/s" counting the bytes the operation must move at least
// (each input read once, each output written once; write-allocate reads are not counted), so
// its ratio to a reference stream in the same run (memcpy, a streaming-store copy, STREAM's
// triad) is the fraction of stream bandwidth reached.
//
// Each benchmark makes one untimed call first: a fresh 64 MiB output block costs a page fault
// per 4 KiB on first touch, which the caching allocator (tensor/cpu/cpu_allocator.cpp) avoids
// in steady state by handing the same block back on the next call.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#include <metagrad/metagrad.h>

namespace {

using mg::Tensor;

constexpr int64_t kStreamN = int64_t{16} << 20;  // 16M floats = 64 MiB per array
constexpr int64_t kRows = 4096, kCols = 1024;    // softmax, layer norm, cross-entropy

benchmark::Counter bytes_per_second(double bytes) {
  return benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Runs op once untimed (first touch of its outputs), then times it.
template <typename Op>
void timed(benchmark::State& state, Op op) {
  benchmark::DoNotOptimize(op());
  for (auto _ : state) benchmark::DoNotOptimize(op());
}

Tensor randn32(const mg::Shape& shape, uint64_t seed) {
  mg::Generator gen(seed);
  return mg::randn(shape, mg::kFloat32, mg::kCPU, &gen);
}

// ---- reference: stream copy -------------------------------------------------------------

void BM_memcpy_stream(benchmark::State& state) {
  std::vector<float> src(static_cast<size_t>(kStreamN), 1.0f), dst(static_cast<size_t>(kStreamN), 0.0f);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), src.size() * sizeof(float));
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = bytes_per_second(2.0 * 4.0 * kStreamN);  // read src, write dst
}
BENCHMARK(BM_memcpy_stream)->Name("copy_f32_16M/memcpy")->UseRealTime();

// The copy with non-temporal stores, which write whole lines without first reading them:
// memcpy here writes through the cache (the C library picks non-temporal stores only for copies
// larger than a share of the L3 it is told of), so each line it writes is also read. Of the two,
// the faster is the machine's stream rate for one pass; every ratio in RESULTS.md is against it.
#if defined(__x86_64__)
__attribute__((target("avx512f"))) void stream_copy_avx512(const float* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
  _mm_sfence();
}
void stream_copy_sse(const float* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
  _mm_sfence();
}

void BM_stream_copy(benchmark::State& state) {
  // 64-byte aligned rows of whole vectors: the allocator's alignment, as mg's tensors have.
  const mg::Tensor src = randn32({kStreamN}, 1), dst = mg::zeros({kStreamN});
  const float* from = src.data_ptr<float>();
  float* to = dst.data_ptr<float>();
  const bool wide = __builtin_cpu_supports("avx512f");
  // On as many threads as mg's kernels use (OMP_NUM_THREADS), each copying one contiguous part.
  for (auto _ : state) {
#pragma omp parallel
    {
      int64_t begin = 0, end = kStreamN;
#ifdef _OPENMP
      const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
      begin = kStreamN * part / parts / 16 * 16;
      end = part + 1 == parts ? kStreamN : kStreamN * (part + 1) / parts / 16 * 16;
#endif
      if (wide) {
        stream_copy_avx512(from + begin, to + begin, end - begin);
      } else {
        stream_copy_sse(from + begin, to + begin, end - begin);
      }
    }
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = bytes_per_second(2.0 * 4.0 * kStreamN);
}
BENCHMARK(BM_stream_copy)->Name("copy_f32_16M/streaming_stores")->UseRealTime();
#endif

// STREAM's copy and triad (a = b, a = b + s * c) as the STREAM benchmark runs them: ordinary
// stores, on as many threads as mg's kernels use, 8 and 12 bytes per element counted (each line
// written is also read first, which STREAM does not count). "Stream bandwidth" in the usual
// sense is these figures.
// The arrays are mg tensors, so that they sit on the same pages (huge pages where the allocator
// gets them) as the kernels' operands.
void BM_stream_copy_plain(benchmark::State& state) {
  const Tensor a = mg::zeros({kStreamN}), b = randn32({kStreamN}, 1);
  float* out = a.data_ptr<float>();
  const float* x = b.data_ptr<float>();
  for (auto _ : state) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < kStreamN; ++i) out[i] = x[i];
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = bytes_per_second(2.0 * 4.0 * kStreamN);
}
BENCHMARK(BM_stream_copy_plain)->Name("copy_f32_16M/stream")->UseRealTime();

void BM_stream_triad(benchmark::State& state) {
  const Tensor a = mg::zeros({kStreamN}), b = randn32({kStreamN}, 1), c = randn32({kStreamN}, 2);
  float* out = a.data_ptr<float>();
  const float *x = b.data_ptr<float>(), *y = c.data_ptr<float>();
  for (auto _ : state) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < kStreamN; ++i) out[i] = x[i] + 3.0f * y[i];
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = bytes_per_second(3.0 * 4.0 * kStreamN);
}
BENCHMARK(BM_stream_triad)->Name("triad_f32_16M/stream")->UseRealTime();

void BM_mg_copy(benchmark::State& state) {
  mg::NoGradGuard no_grad;
  const Tensor a = randn32({kStreamN}, 1);
  timed(state, [&] { return a.clone(); });
  state.counters["GB/s"] = bytes_per_second(2.0 * 4.0 * kStreamN);
}
BENCHMARK(BM_mg_copy)->Name("copy_f32_16M/mg")->UseRealTime();

// ---- elementwise --------------------------------------------------------------------------

void BM_mg_add(benchmark::State& state) {
  mg::NoGradGuard no_grad;
  const Tensor a = randn32({kStreamN}, 2), b = randn32({kStreamN}, 3);
  timed(state, [&] { return mg::add(a, b); });
  state.counters["GB/s"] = bytes_per_second(3.0 * 4.0 * kStreamN);  // read a, b; write c
}
BENCHMARK(BM_mg_add)->Name("add_f32_16M/mg")->UseRealTime();

void BM_mg_mul(benchmark::State& state) {
  mg::NoGradGuard no_grad;
  const Tensor a = randn32({kStreamN}, 2), b = randn32({kStreamN}, 3);
  timed(state, [&] { return mg::mul(a, b); });
  state.counters["GB/s"] = bytes_per_second(3.0 * 4.0 * kStreamN);
}
BENCHMARK(BM_mg_mul)->Name("mul_f32_16M/mg")->UseRealTime();

// A full sum (accumulated in double), and BatchNorm's per-channel statistics: [32, 64, 28, 28]
// summed over all dims but the channel.
void BM_mg_sum(benchmark::State& state) {
  mg::NoGradGuard no_grad;
  const Tensor a = randn32({kStreamN}, 2);
  timed(state, [&] { return mg::sum(a); });
  state.counters["GB/s"] = bytes_per_second(4.0 * kStreamN);
}
BENCHMARK(BM_mg_sum)->Name("sum_f32_16M/mg")->UseRealTime();

void BM_mg_channel_sum(benchmark::State& state) {
  mg::NoGradGuard no_grad;
  const Tensor a = randn32({32, 64, 28, 28}, 2);
  timed(state, [&] { return mg::sum(a, {0, 2, 3}); });
  state.counters["GB/s"] = bytes_per_second(4.0 * 32 * 64 * 28 * 28);
}
BENCHMARK(BM_mg_channel_sum)->Name("channel_sum_f32_32x64x28x28/mg")->UseRealTime();

void BM_mg_exp(benchmark::State& state) {
  mg::NoGradGuard no_grad;
  const Tensor a = randn32({kStreamN}, 4);
  timed(state, [&] { return mg::exp(a); });
  state.counters["GB/s"] = bytes_per_second(2.0 * 4.0 * kStreamN);
}
BENCHMARK(BM_mg_exp)->Name("exp_f32_16M/mg")->UseRealTime();

void BM_mg_gelu(benchmark::State& state) {
  mg::NoGradGuard no_grad;
  const Tensor a = randn32({kStreamN}, 5);
  const auto approximate = state.range(0) == 1 ? mg::GeluApproximation::Tanh : mg::GeluApproximation::None;
  timed(state, [&] { return mg::gelu(a, approximate); });
  state.counters["GB/s"] = bytes_per_second(2.0 * 4.0 * kStreamN);
}
BENCHMARK(BM_mg_gelu)->Name("gelu_tanh_f32_16M/mg")->Arg(1)->UseRealTime();
BENCHMARK(BM_mg_gelu)->Name("gelu_erf_f32_16M/mg")->Arg(0)->UseRealTime();

// The other float32 unary ops with a vectorised form: log and the square roots of positive
// inputs, tanh, sigmoid, erf, softplus, sin, cos and sign of normal ones.
struct UnaryCase {
  const char* name;
  Tensor (*fn)(const Tensor&);
  bool positive;
};
const UnaryCase kUnaryCases[] = {
    {"log", &mg::log, true},
    {"sqrt", &mg::sqrt, true},
    {"rsqrt", &mg::rsqrt, true},
    {"tanh", &mg::tanh, false},
    {"sigmoid", &mg::sigmoid, false},
    {"erf", &mg::erf, false},
    {"softplus", &mg::softplus, false},
    {"sin", &mg::sin, false},
    {"cos", &mg::cos, false},
    {"sign", &mg::sign, false},
};

void BM_mg_unary(benchmark::State& state) {
  mg::NoGradGuard no_grad;
  const UnaryCase& c = kUnaryCases[state.range(0)];
  Tensor a = randn32({kStreamN}, 6);
  if (c.positive) a = mg::abs(a) + 0.01;
  timed(state, [&] { return c.fn(a); });
  state.counters["GB/s"] = bytes_per_second(2.0 * 4.0 * kStreamN);
}
const bool kUnaryRegistered = [] {
  for (int64_t i = 0; i < static_cast<int64_t>(std::size(kUnaryCases)); ++i)
    benchmark::RegisterBenchmark((std::string(kUnaryCases[i].name) + "_f32_16M/mg").c_str(), BM_mg_unary)
        ->Arg(i)
        ->UseRealTime();
  return true;
}();

// ---- row-wise normalisation ---------------------------------------------------------------

void BM_mg_softmax(benchmark::State& state) {
  mg::NoGradGuard no_grad;
  const Tensor x = randn32({kRows, kCols}, 6);
  const bool log = state.range(0) == 1;
  timed(state, [&] { return log ? mg::log_softmax(x, 1) : mg::softmax(x, 1); });
  state.counters["GB/s"] = bytes_per_second(2.0 * 4.0 * kRows * kCols);  // read x, write y
}
BENCHMARK(BM_mg_softmax)->Name("softmax_f32_4096x1024/mg")->Arg(0)->UseRealTime();
BENCHMARK(BM_mg_softmax)->Name("log_softmax_f32_4096x1024/mg")->Arg(1)->UseRealTime();

void BM_mg_layer_norm(benchmark::State& state) {
  mg::NoGradGuard no_grad;
  const Tensor x = randn32({kRows, kCols}, 7), w = randn32({kCols}, 8), b = randn32({kCols}, 9);
  timed(state, [&] { return mg::nn::functional::layer_norm(x, {kCols}, w, b, 1e-5); });
  state.counters["GB/s"] = bytes_per_second(2.0 * 4.0 * kRows * kCols);  // read x, write y
}
BENCHMARK(BM_mg_layer_norm)->Name("layer_norm_f32_4096x1024_affine/mg")->UseRealTime();

// Mean cross-entropy of class-index targets and its gradient with respect to the logits.
// Bytes: the forward reads the logits, the backward reads them again and writes the gradient:
// 3 x 4 bytes per logit.
void BM_mg_cross_entropy(benchmark::State& state) {
  Tensor x = randn32({kRows, kCols}, 10).requires_grad_();
  mg::Generator gen(11);
  const Tensor target = mg::randint(0, kCols, {kRows}, mg::kCPU, &gen);
  timed(state, [&] {
    const Tensor loss = mg::nn::cross_entropy(x, target);
    return mg::grad({loss}, {x})[0];
  });
  state.counters["GB/s"] = bytes_per_second(3.0 * 4.0 * kRows * kCols);
}
BENCHMARK(BM_mg_cross_entropy)->Name("cross_entropy_fwd_bwd_f32_4096x1024/mg")->UseRealTime();

// ---- optimizer ----------------------------------------------------------------------------

// Adam on 16M parameters: reads param, grad, exp_avg, exp_avg_sq; writes param, exp_avg,
// exp_avg_sq: 7 x 4 bytes per parameter.
void BM_mg_adam(benchmark::State& state) {
  Tensor p = randn32({kStreamN}, 12).requires_grad_();
  p.set_grad(randn32({kStreamN}, 13));
  mg::nn::Adam opt({p}, {.lr = 1e-3});
  opt.step();  // creates the moment buffers (first touch)
  for (auto _ : state) {
    opt.step();
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = bytes_per_second(7.0 * 4.0 * kStreamN);
}
BENCHMARK(BM_mg_adam)->Name("adam_step_f32_16M/mg")->UseRealTime();

// ---- attention (compute-bound, for scale) -------------------------------------------------

// Self-attention of x [32, 128, 256] with 4 heads, forward and backward to x and the weights.
// FLOPs: projections 2BLE(3E) + 2BLE^2, scores and weighted sum 2 x 2BL^2E, backward twice the
// forward.
void BM_mg_attention(benchmark::State& state) {
  const int64_t B = 32, L = 128, E = 256, H = 4;
  mg::Generator gen(14);
  mg::nn::MultiheadAttention mha(E, H, 0.0, true, &gen);
  Tensor x = randn32({B, L, E}, 15).requires_grad_();
  std::vector<Tensor> inputs = mha.parameters();
  inputs.push_back(x);
  timed(state, [&] {
    const Tensor y = mha(x);
    return mg::grad({mg::sum(y)}, inputs);
  });
  const double forward = 2.0 * B * L * E * 3 * E + 2.0 * B * L * E * E + 2.0 * 2.0 * B * L * L * E;
  state.counters["GFLOP/s"] = benchmark::Counter(3.0 * forward * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_mg_attention)
    ->Name("attention_fwd_bwd_f32_b32_l128_e256_h4/mg")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
