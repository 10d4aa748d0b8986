// Memory-bound kernels on cuda:0 in GB/s (the bytes each must read and write once, over its time)
// beside a device-to-device cudaMemcpy of the same buffer (read once, written once): the rate the
// memory system allows a plain stream.
#include <cstdint>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <metagrad/metagrad.h>

#include "cuda/cuda_context.h"
#include "gpu_bench.h"

namespace mg_gpu_bench {
namespace {

constexpr int64_t kElements = int64_t{1} << 26;  // 256 MiB of float32: far past every cache
constexpr int kReps = 20;

double gbps(double bytes, double ms) { return bytes * kReps / (ms * 1e6); }

}  // namespace

int run_bandwidth(const std::string& out_dir) {
  namespace k = mg::kernels;
  mg::NoGradGuard no_grad;
  const mg::Device gpu("cuda:0");
  cudaStream_t stream = mg::cuda::stream_for(0);
  mg::Generator gen(2);
  const mg::Tensor a = mg::randn({kElements}, mg::kFloat32, gpu, &gen);
  const mg::Tensor b = mg::randn({kElements}, mg::kFloat32, gpu, &gen);
  const mg::Tensor row = mg::randn({1024}, mg::kFloat32, gpu, &gen);
  const mg::Tensor square = a.view({8192, 8192});
  const mg::Tensor rows = a.view({kElements / 1024, 1024});
  const double n4 = static_cast<double>(kElements) * 4.0;

  // The reference: cudaMemcpyAsync of the same buffer on the same stream.
  const mg::Tensor dst = mg::empty({kElements}, mg::kFloat32, gpu);
  check_cuda(cudaMemcpyAsync(dst.raw_data(), a.raw_data(), static_cast<size_t>(n4), cudaMemcpyDeviceToDevice, stream),
             "cudaMemcpyAsync");
  const double memcpy_ms = time_on_stream(stream, [&] {
    for (int i = 0; i < kReps; ++i)
      check_cuda(
          cudaMemcpyAsync(dst.raw_data(), a.raw_data(), static_cast<size_t>(n4), cudaMemcpyDeviceToDevice, stream),
          "cudaMemcpyAsync");
  });
  const double reference = gbps(2 * n4, memcpy_ms);
  print_result("bandwidth", "cudaMemcpy-d2d", reference, "GB/s");

  struct Kernel {
    std::string name;
    double bytes;  // compulsory traffic of one call
    std::function<void()> run;
  };
  const std::vector<Kernel> kernels = {
      {"add", 3 * n4, [&] { (void)k::binary(mg::BinaryOp::Add, a, b); }},
      {"mul-scalar", 2 * n4, [&] { (void)k::binary(mg::BinaryOp::Mul, a, k::scalar_like(2.0, a)); }},
      {"add-row-broadcast", 2 * n4, [&] { (void)k::binary(mg::BinaryOp::Add, rows, row); }},
      {"exp", 2 * n4, [&] { (void)k::unary(mg::UnaryOp::Exp, a); }},
      {"gelu-tanh", 2 * n4, [&] { (void)k::unary(mg::UnaryOp::GeluTanh, a); }},
      {"clone", 2 * n4, [&] { (void)k::clone(a); }},
      {"transpose-copy", 2 * n4, [&] { (void)k::contiguous(square.transpose(0, 1)); }},
      {"sum-all", n4, [&] { (void)k::reduce(mg::ReduceOp::Sum, a, {}, false); }},
      {"sum-rows", n4, [&] { (void)k::reduce(mg::ReduceOp::Sum, rows, {1}, false); }},
      {"sum-cols", n4, [&] { (void)k::reduce(mg::ReduceOp::Sum, rows, {0}, false); }},
      {"softmax-rows-1024", 2 * n4, [&] { (void)k::softmax(rows, 1, false); }},
      {"layer-norm-rows-1024", 2 * n4, [&] { (void)k::layer_norm(rows, 1, mg::Tensor(), mg::Tensor(), 1e-5); }},
  };
  std::ofstream csv(out_dir + "/bandwidth.csv");
  csv << "kernel,gbps,memcpy_gbps,ratio\n";
  for (const Kernel& kernel : kernels) {
    kernel.run();  // warm-up: the allocator's blocks for the outputs
    const double ms = time_on_stream(stream, [&] {
      for (int i = 0; i < kReps; ++i) kernel.run();
    });
    const double rate = gbps(kernel.bytes, ms);
    csv << kernel.name << "," << rate << "," << reference << "," << rate / reference << "\n";
    print_result("bandwidth", kernel.name, rate, "GB/s", reference);
  }
  mg::empty_cache(gpu);
  return 0;
}

}  // namespace mg_gpu_bench
