#include "cuda_context.h"

#include <array>
#include <mutex>

#include "cuda_check.h"
#include "cuda_device_info.h"

namespace mg::cuda {
namespace {

// More than any machine has; the index is checked against the real count first.
constexpr int kMaxDevices = 64;

struct DeviceState {
  std::once_flag stream_once, cublas_once;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  void* cublas_workspace = nullptr;
};

// What cuBLAS asks for on Hopper (4 MiB per stream plus its split-K buffers).
constexpr std::size_t kCublasWorkspaceBytes = std::size_t{32} << 20;

std::array<DeviceState, kMaxDevices>& states() {
  static auto* all = new std::array<DeviceState, kMaxDevices>();  // never destroyed, see the header
  return *all;
}

}  // namespace

int device_count() {
  static const int count = [] {
    const int n = cuda_device_count();
    return n > kMaxDevices ? kMaxDevices : n;
  }();
  return count;
}

void check_device(const char* op, Device device) {
  MG_CHECK(device.is_cuda(), op, ": ", device, " is not a CUDA device");
  const int count = device_count();
  MG_CHECK(count > 0, op, ": no CUDA device is visible to this process (asked for ", device, ")");
  MG_CHECK(device.index >= 0 && device.index < count, op, ": no device ", device, "; this process sees ", count,
           " CUDA device", count == 1 ? "" : "s", " (cuda:0", count > 1 ? " .. cuda:" + std::to_string(count - 1) : "",
           ")");
}

cudaStream_t stream_for(int device) {
  DeviceState& s = states()[static_cast<size_t>(device)];
  std::call_once(s.stream_once, [&] {
    DeviceGuard guard(device);
    // Non-blocking: no implicit synchronisation with the legacy default stream that other
    // libraries in the process may use.
    MG_CUDA_CHECK("cuda stream", cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
  });
  return s.stream;
}

cublasHandle_t cublas_for(int device) {
  DeviceState& s = states()[static_cast<size_t>(device)];
  std::call_once(s.cublas_once, [&] {
    DeviceGuard guard(device);
    MG_CUBLAS_CHECK("matmul", cublasCreate(&s.cublas));
    MG_CUBLAS_CHECK("matmul", cublasSetStream(s.cublas, stream_for(device)));
    // A workspace of our own, so that cuBLAS never allocates one while a graph is captured.
    MG_CUDA_CHECK("matmul", cudaMalloc(&s.cublas_workspace, kCublasWorkspaceBytes));
    MG_CUBLAS_CHECK("matmul", cublasSetWorkspace(s.cublas, s.cublas_workspace, kCublasWorkspaceBytes));
  });
  return s.cublas;
}

DeviceGuard::DeviceGuard(int device) {
  MG_CUDA_CHECK("cuda device", cudaGetDevice(&previous_));
  if (previous_ != device) MG_CUDA_CHECK("cuda device", cudaSetDevice(device));
}

DeviceGuard::~DeviceGuard() {
  int current = -1;
  if (cudaGetDevice(&current) == cudaSuccess && current != previous_) (void)cudaSetDevice(previous_);
}

void synchronize(const char* op, int device) {
  DeviceGuard guard(device);
  MG_CUDA_CHECK(op, cudaStreamSynchronize(stream_for(device)));
}

}  // namespace mg::cuda
