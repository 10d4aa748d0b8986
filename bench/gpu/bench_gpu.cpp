// bench_gpu: metagrad's CUDA backend against the machine's own limits, on cuda:0.
//   bench_gpu gemm      <out-dir>   matmul GFLOP/s beside cuBLAS called directly (n = 512 .. 8192)
//   bench_gpu bandwidth <out-dir>   elementwise / reduction GB/s beside a device-to-device cudaMemcpy
//   bench_gpu meta <W-sin|W-omni|W-tf> <out-dir>
//                                   MAML meta-steps (bench/bench_meta.cpp's workloads) on the GPU,
//                                   looped and task-batched, their loss checked against the CPU's,
//                                   and the workload's parameters and tasks written to
//                                   <out-dir>/<workload>.safetensors for bench/gpu/torch_meta.py.
// Every result is one "RESULT ..." line on stdout (bench/gpu/run.sh collects them).
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>

#include <metagrad/metagrad.h>

#include "gpu_bench.h"

namespace mg_gpu_bench {

void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

void print_result(const std::string& part, const std::string& name, double value, const std::string& unit,
                  double reference) {
  if (reference > 0)
    std::printf("RESULT %s %s %.2f %s reference %.2f ratio %.3f\n", part.c_str(), name.c_str(), value, unit.c_str(),
                reference, value / reference);
  else
    std::printf("RESULT %s %s %.2f %s\n", part.c_str(), name.c_str(), value, unit.c_str());
  std::fflush(stdout);
}

}  // namespace mg_gpu_bench

int main(int argc, char** argv) {
  const std::string usage = "usage: bench_gpu gemm|bandwidth <out-dir> | bench_gpu meta <W-sin|W-omni|W-tf> <out-dir>";
  if (argc < 3) {
    std::fprintf(stderr, "%s\n", usage.c_str());
    return 2;
  }
  if (mg::build_info().cuda_devices == 0) {
    std::fprintf(stderr, "bench_gpu: no CUDA device is visible to this process\n");
    return 77;
  }
  try {
    const std::string part = argv[1];
    if (part == "gemm") return mg_gpu_bench::run_gemm(argv[2]);
    if (part == "bandwidth") return mg_gpu_bench::run_bandwidth(argv[2]);
    if (part == "meta" && argc >= 4) return mg_gpu_bench::run_meta(argv[2], argv[3]);
    std::fprintf(stderr, "%s\n", usage.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gpu: %s\n", e.what());
    return 1;
  }
}
