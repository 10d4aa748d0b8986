// 3x3 convolutions, part of bench_kernels: the convolution kernels (forward, input gradient and
// weight gradient, as a training step runs them) beside the same three products written as
// im2col + GEMM with the library's own im2col, col2im and GEMM over the whole batch, the path a
// 3x3 stride-1 padding-1 convolution took before Winograd's F(2x2, 3x3) (tensor/cpu/cpu_winograd.cpp).
// The shapes are conv4's on Omniglot: 75 query images, 64 channels, 14x14, 7x7 and 3x3. Both report
// GFLOP/s counting the direct convolution's 2 * 9 multiply-adds per output, input channel and
// output channel, three times (forward and both gradients); their ratio in one run is the speedup.
#include <benchmark/benchmark.h>

#include <cstdint>

#include <metagrad/metagrad.h>

namespace {

using mg::Tensor;

constexpr int64_t kImages = 75, kChannels = 64;

Tensor randn32(const mg::Shape& shape, uint64_t seed) {
  mg::Generator gen(seed);
  return mg::randn(shape, mg::kFloat32, mg::kCPU, &gen);
}

mg::Window2d same_3x3() {
  mg::Window2d w;
  w.kh = w.kw = 3;
  w.ph = w.pw = 1;
  return w;
}

benchmark::Counter conv_gflops(int64_t size) {
  const double flops = 3.0 * 2.0 * 9.0 * kImages * kChannels * kChannels * static_cast<double>(size * size);
  return benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_conv_kernels(benchmark::State& state) {
  mg::NoGradGuard no_grad;
  const int64_t size = state.range(0);
  const Tensor x = randn32({kImages, kChannels, size, size}, 1), weight = randn32({kChannels, kChannels, 3, 3}, 2);
  const Tensor bias = randn32({kChannels}, 3), grad = randn32({kImages, kChannels, size, size}, 4);
  const mg::Window2d w = same_3x3();
  for (auto _ : state) {
    benchmark::DoNotOptimize(mg::kernels::conv2d(x, weight, bias, w));
    benchmark::DoNotOptimize(mg::kernels::conv2d_input_grad(grad, weight, size, size, w));
    benchmark::DoNotOptimize(mg::kernels::conv2d_weight_grad(grad, x, w));
  }
  state.counters["GFLOP/s"] = conv_gflops(size);
}
BENCHMARK(BM_conv_kernels)->Name("conv3x3_f32_75x64/mg")->Arg(14)->Arg(7)->Arg(3)->UseRealTime();

// out = W cols, dx = fold(W^T g), dW = sum over images of g cols^T, with cols = im2col(x).
void BM_conv_im2col_gemm(benchmark::State& state) {
  mg::NoGradGuard no_grad;
  const int64_t size = state.range(0), rows = kChannels * 9, length = size * size;
  const Tensor x = randn32({kImages, kChannels, size, size}, 1);
  const Tensor weight = randn32({kChannels, rows}, 2);
  const Tensor grad = randn32({kImages, kChannels, length}, 4);
  const Tensor weight_t = weight.transpose(0, 1);
  const mg::Window2d w = same_3x3();
  for (auto _ : state) {
    const Tensor cols = mg::kernels::im2col(x, w);
    benchmark::DoNotOptimize(mg::kernels::matmul(weight, cols));
    benchmark::DoNotOptimize(mg::kernels::col2im(mg::kernels::matmul(weight_t, grad), size, size, w));
    benchmark::DoNotOptimize(mg::kernels::reduce(
        mg::ReduceOp::Sum, mg::kernels::matmul(grad, cols.transpose(1, 2)), {0}, false));
  }
  state.counters["GFLOP/s"] = conv_gflops(size);
}
BENCHMARK(BM_conv_im2col_gemm)->Name("conv3x3_f32_75x64/im2col_gemm")->Arg(14)->Arg(7)->Arg(3)->UseRealTime();

}  // namespace
