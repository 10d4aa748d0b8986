// matmul on cuda:0 (metagrad: validation, dispatch, the caching allocator and cuBLAS behind it)
// beside the same product as one cublasGemmEx call on preallocated buffers: what our layers cost
// over the library itself. float32 (TF32 off, the default), TF32 (both sides allowed it) and float64.
#include <cublas_v2.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>

#include <metagrad/metagrad.h>

#include "cuda/cuda_blas.h"
#include "cuda/cuda_context.h"
#include "gpu_bench.h"

namespace mg_gpu_bench {
namespace {

void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string(what) + ": " + cublasGetStatusString(status));
}

// Enough repetitions for ~4 TFLOP of work (a fraction of a second at the device's rate).
int repetitions(int64_t n) { return static_cast<int>(std::clamp<double>(4e12 / (2.0 * n * n * n), 3, 2000)); }

struct Pair {
  double ours_gflops, cublas_gflops;
};

Pair measure(int64_t n, mg::DType dtype, bool tf32) {
  const int reps = repetitions(n);
  const double flops = 2.0 * static_cast<double>(n) * n * n;
  mg::NoGradGuard no_grad;
  mg::Generator gen(1);
  const mg::Tensor a = mg::randn({n, n}, dtype, mg::Device("cuda:0"), &gen);
  const mg::Tensor b = mg::randn({n, n}, dtype, mg::Device("cuda:0"), &gen);
  mg::cuda::set_allow_tf32(tf32);
  cudaStream_t stream = mg::cuda::stream_for(0);
  (void)mg::kernels::matmul(a, b);  // warm-up: cuBLAS heuristics, the allocator's block for out
  const double ours_ms = time_on_stream(stream, [&] {
    for (int i = 0; i < reps; ++i) (void)mg::kernels::matmul(a, b);
  });

  // The reference: one handle and stream of its own, the output allocated once.
  cublasHandle_t handle;
  check_cublas(cublasCreate(&handle), "cublasCreate");
  cudaStream_t ref_stream;
  check_cuda(cudaStreamCreateWithFlags(&ref_stream, cudaStreamNonBlocking), "cudaStreamCreate");
  check_cublas(cublasSetStream(handle, ref_stream), "cublasSetStream");
  void* c = nullptr;
  check_cuda(cudaMalloc(&c, static_cast<size_t>(n * n) * mg::element_size(dtype)), "cudaMalloc");
  check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  const bool f32 = dtype == mg::kFloat32;
  const cudaDataType_t type = f32 ? CUDA_R_32F : CUDA_R_64F;
  const cublasComputeType_t compute =
      f32 ? (tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F) : CUBLAS_COMPUTE_64F;
  const float one_f = 1.0f, zero_f = 0.0f;
  const double one_d = 1.0, zero_d = 0.0;
  const void* alpha = f32 ? static_cast<const void*>(&one_f) : static_cast<const void*>(&one_d);
  const void* beta = f32 ? static_cast<const void*>(&zero_f) : static_cast<const void*>(&zero_d);
  const int ni = static_cast<int>(n);
  auto gemm = [&] {
    check_cublas(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, ni, ni, ni, alpha, b.raw_data(), type, ni, a.raw_data(),
                              type, ni, beta, c, type, ni, compute, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
  };
  gemm();
  const double ref_ms = time_on_stream(ref_stream, [&] {
    for (int i = 0; i < reps; ++i) gemm();
  });
  check_cuda(cudaFree(c), "cudaFree");
  cublasDestroy(handle);
  cudaStreamDestroy(ref_stream);
  mg::cuda::set_allow_tf32(false);
  return {flops * reps / (ours_ms * 1e6), flops * reps / (ref_ms * 1e6)};
}

}  // namespace

int run_gemm(const std::string& out_dir) {
  std::ofstream csv(out_dir + "/gemm.csv");
  csv << "dtype,n,ours_gflops,cublas_gflops,ratio\n";
  struct Config {
    const char* name;
    mg::DType dtype;
    bool tf32;
    int64_t max_n;
  };
  for (const Config& cfg : {Config{"float32", mg::kFloat32, false, 8192}, Config{"tf32", mg::kFloat32, true, 8192},
                            Config{"float64", mg::kFloat64, false, 4096}}) {
    for (int64_t n : {512, 1024, 2048, 4096, 8192}) {
      if (n > cfg.max_n) continue;
      const Pair p = measure(n, cfg.dtype, cfg.tf32);
      csv << cfg.name << "," << n << "," << p.ours_gflops << "," << p.cublas_gflops << ","
          << p.ours_gflops / p.cublas_gflops << "\n";
      print_result("gemm", std::string(cfg.name) + "/" + std::to_string(n), p.ours_gflops, "GFLOP/s", p.cublas_gflops);
    }
  }
  mg::empty_cache(mg::Device("cuda:0"));
  return 0;
}

}  // namespace mg_gpu_bench
