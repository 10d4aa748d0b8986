// Copies between devices: host <-> device and device <-> device. Only dense blocks of one dtype
// cross the bus; strides and dtype conversion are dealt with on whichever side has the kernel
// for them (the CPU backend's copy on the host, copy_same_device on a GPU), through a
// contiguous staging tensor when the destination cannot take the bytes as they are.
#include "../tensor/cpu/cpu_backend.h"
#include "cuda_check.h"
#include "cuda_context.h"
#include "cuda_graph.h"
#include "cuda_kernels.h"

namespace mg::cuda {
namespace {

std::size_t byte_count(const Tensor& t) { return static_cast<std::size_t>(t.numel()) * element_size(t.dtype()); }

// t itself when it is dense, else a contiguous copy of it on its own device.
Tensor dense(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor out = Tensor::empty(t.shape(), t.dtype(), t.device());
  if (t.device().is_cpu())
    cpu_backend().copy(t, out);
  else
    copy_same_device(t, out);
  return out;
}

// Whether dst can receive src's bytes unchanged.
bool takes_bytes_of(const Tensor& dst, const Tensor& src) { return dst.is_contiguous() && dst.dtype() == src.dtype(); }

void host_to_device(const Tensor& src, const Tensor& dst) {
  const int device = dst.device().index;
  MG_CHECK(!capturing(device), "to: a copy from the host to cuda:", device,
           " while a graph is captured there; a replay would copy stale host memory. Make the tensor on the ",
           "device before the capture");
  const Tensor from = dense(src);
  const Tensor to = takes_bytes_of(dst, src) ? dst : Tensor::empty(dst.shape(), src.dtype(), dst.device());
  // From pageable memory (the CPU allocator's) the call returns once the bytes are staged, so
  // `from` may be freed right after it.
  MG_CUDA_CHECK("to", cudaMemcpyAsync(to.raw_data(), from.raw_data(), byte_count(from), cudaMemcpyHostToDevice,
                                      stream_for(device)));
  if (!to.same(dst)) copy_same_device(to, dst);
}

void device_to_host(const Tensor& src, const Tensor& dst) {
  const int device = src.device().index;
  MG_CHECK(!capturing(device), "to: a read of cuda:", device,
           " on the host (item(), to(cpu)) while a graph is captured there; nothing has run yet. Read the ",
           "results after a replay");
  const Tensor from = dense(src);
  const Tensor to = takes_bytes_of(dst, src) ? dst : Tensor::empty(dst.shape(), src.dtype(), kCPU);
  MG_CUDA_CHECK("to", cudaMemcpyAsync(to.raw_data(), from.raw_data(), byte_count(from), cudaMemcpyDeviceToHost,
                                      stream_for(device)));
  MG_CUDA_CHECK("to", cudaStreamSynchronize(stream_for(device)));
  if (!to.same(dst)) cpu_backend().copy(to, dst);
}

void device_to_device(const Tensor& src, const Tensor& dst) {
  const int from_device = src.device().index, to_device = dst.device().index;
  Tensor from;
  {
    DeviceGuard guard(from_device);
    from = dense(src);
    // The copy below runs on the destination's stream: the source's must have produced it first.
    MG_CUDA_CHECK("to", cudaStreamSynchronize(stream_for(from_device)));
  }
  const Tensor to = takes_bytes_of(dst, src) ? dst : Tensor::empty(dst.shape(), src.dtype(), dst.device());
  MG_CUDA_CHECK("to", cudaMemcpyPeerAsync(to.raw_data(), to_device, from.raw_data(), from_device, byte_count(from),
                                          stream_for(to_device)));
  if (!to.same(dst)) copy_same_device(to, dst);
  // `from` returns to its device's cache when this function ends, and work issued later on that
  // device's stream is not ordered after this copy: wait for it.
  MG_CUDA_CHECK("to", cudaStreamSynchronize(stream_for(to_device)));
}

}  // namespace

void copy_across_devices(const Tensor& src, const Tensor& dst) {
  if (src.device().is_cpu()) return host_to_device(src, dst);
  if (dst.device().is_cpu()) return device_to_host(src, dst);
  device_to_device(src, dst);
}

}  // namespace mg::cuda
