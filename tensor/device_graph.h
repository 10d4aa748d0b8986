#pragma once
// A device's work recorded once and replayed: a CUDA graph on a CUDA device. A meta-learning
// step on a small model is thousands of short kernels, whose launch costs more than their
// arithmetic; a replay launches them all at once.
//
//   Tensor x = ...static input on cuda:0...;  Tensor y;
//   auto graph = mg::capture_graph(x.device(), [&] { y = model(x); });  // records, runs nothing
//   x.copy_(next_input); graph->replay();                              // y holds model(next_input)
//
// What the recorded work reads must be in tensors that exist before the capture and outlive the
// graph (refill them in place between replays); what it writes lands in the same memory on every
// replay. The allocations made while recording come from a pool kept for the graph until it is
// destroyed. The recorded work must not read values on the host (item(), to(cpu)), copy from
// the host, or draw random numbers (a replay would repeat the draws): capture throws an
// mg::Error saying which, and then nothing was recorded.
#include <functional>
#include <memory>

#include "device.h"

namespace mg {

class DeviceGraph {
 public:
  virtual ~DeviceGraph() = default;
  // Runs the recorded work again, ordered after all work issued before on the device.
  virtual void replay() = 0;
  virtual Device device() const = 0;
};

// Runs work with the device's work recorded instead of executed. Throws mg::Error for a device
// without graphs (the CPU) and when work does what a graph cannot replay (see above).
std::unique_ptr<DeviceGraph> capture_graph(Device device, const std::function<void()>& work);

// Whether work on device is being recorded now. Checks that read values on the host (the range
// of class-index targets) are skipped then; the kernels give NaN instead of reading out of range.
bool capturing_graph(Device device);

}  // namespace mg
