#include "cuda_graph.h"

#include <exception>
#include <string>

#include "../tensor/creation.h"
#include "cuda_allocator.h"
#include "cuda_check.h"
#include "cuda_context.h"

namespace mg::cuda {
namespace {

class CudaGraph final : public DeviceGraph {
 public:
  CudaGraph(int device, int pool, cudaGraphExec_t exec) : device_(device), pool_(pool), exec_(exec) {}
  ~CudaGraph() override {
    DeviceGuard guard(device_);
    // A replay may still run: the pool's blocks go back to the cache only after it has.
    (void)cudaStreamSynchronize(stream_for(device_));
    (void)cudaGraphExecDestroy(exec_);
    release_graph_pool(device_, pool_);
  }
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  void replay() override {
    DeviceGuard guard(device_);
    MG_CUDA_CHECK("graph replay", cudaGraphLaunch(exec_, stream_for(device_)));
  }
  Device device() const override { return Device(DeviceType::CUDA, device_); }

 private:
  int device_;
  int pool_;
  cudaGraphExec_t exec_;
};

// Ends a capture that failed part-way and drops what was recorded.
void abandon_capture(cudaStream_t stream) {
  cudaGraph_t partial = nullptr;
  (void)cudaStreamEndCapture(stream, &partial);
  if (partial != nullptr) (void)cudaGraphDestroy(partial);
  (void)cudaGetLastError();
}

}  // namespace

bool capturing(int device) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  MG_CUDA_CHECK("cuda stream", cudaStreamIsCapturing(stream_for(device), &status));
  return status != cudaStreamCaptureStatusNone;
}

std::unique_ptr<DeviceGraph> capture_graph(int device, const std::function<void()>& work) {
  check_device("capture_graph", Device(DeviceType::CUDA, device));
  DeviceGuard guard(device);
  const cudaStream_t stream = stream_for(device);
  (void)cublas_for(device);  // created, with its workspace, before the capture
  // The capture starts from a quiet stream, so that nothing issued before is mistaken for it.
  MG_CUDA_CHECK("capture_graph", cudaStreamSynchronize(stream));
  const uint64_t draws_before = default_generator().offset();
  const int pool = begin_graph_pool(device);
  // Relaxed: the caching allocator may call cudaMalloc while the stream is captured.
  MG_CUDA_CHECK("capture_graph", cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
  try {
    work();
  } catch (const std::exception& e) {
    abandon_capture(stream);
    end_graph_pool(device);
    release_graph_pool(device, pool);
    MG_FAIL("capture_graph: the recorded work failed, nothing was recorded: ", e.what());
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  end_graph_pool(device);
  if (ended != cudaSuccess || graph == nullptr) {
    (void)cudaGetLastError();
    if (graph != nullptr) (void)cudaGraphDestroy(graph);
    release_graph_pool(device, pool);
    MG_FAIL("capture_graph: the capture on cuda:", device, " was invalidated (", cudaGetErrorString(ended),
            "): the work synchronised with the host or used another stream");
  }
  if (default_generator().offset() != draws_before) {
    (void)cudaGraphDestroy(graph);
    release_graph_pool(device, pool);
    MG_FAIL("capture_graph: the recorded work draws random numbers (dropout?); every replay would repeat the ",
            "same draws. Capture work without random draws");
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
  (void)cudaGraphDestroy(graph);
  if (made != cudaSuccess) {
    release_graph_pool(device, pool);
    throw_cuda_error("capture_graph", "cudaGraphInstantiate", made);
  }
  return std::make_unique<CudaGraph>(device, pool, exec);
}

}  // namespace mg::cuda
