#pragma once
// Per-device state of the CUDA backend: the device count, the one stream each device runs its
// work on, and its cuBLAS handle. All created on first use and kept for the life of the process
// (storages owned by static objects may be freed after main returns, and need them).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "../tensor/device.h"

namespace mg::cuda {

// Devices visible to this process (0 without a driver or device); asked once.
int device_count();
// Throws mg::Error naming op unless device is a CUDA device this process can use.
void check_device(const char* op, Device device);

// The stream every kernel and copy for this device is issued on. Work within one device is
// ordered by it, which is what lets the allocator hand a freed block to the next request at once.
cudaStream_t stream_for(int device);
// The device's cuBLAS handle, bound to stream_for(device).
cublasHandle_t cublas_for(int device);

// Makes device current for the calling thread, and restores the previous one on exit.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// Blocks the host until every operation issued on device's stream has finished.
void synchronize(const char* op, int device);

}  // namespace mg::cuda
