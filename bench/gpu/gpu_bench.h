#pragma once
// Pieces shared by bench_gpu's parts: timing on a CUDA stream and the result lines every part
// prints (and run.sh collects into one table).
#include <cuda_runtime.h>

#include <cstdio>
#include <string>

namespace mg_gpu_bench {

// Milliseconds the work issued on stream by fn took, measured with events on that stream.
template <typename Fn>
double time_on_stream(cudaStream_t stream, Fn&& fn) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start, stream);
  fn();
  cudaEventRecord(stop, stream);
  cudaEventSynchronize(stop);
  float ms = 0.0f;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return static_cast<double>(ms);
}

// Throws std::runtime_error naming the call when a CUDA runtime call fails.
void check_cuda(cudaError_t err, const char* what);

// One result: "RESULT <part> <name> <value> <unit> [reference <value> ratio <ours / reference>]".
void print_result(const std::string& part, const std::string& name, double value, const std::string& unit,
                  double reference = -1.0);

int run_gemm(const std::string& out_dir);
int run_bandwidth(const std::string& out_dir);
int run_meta(const std::string& workload, const std::string& out_dir);

}  // namespace mg_gpu_bench
