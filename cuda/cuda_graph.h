#pragma once
// CUDA graphs behind mg::capture_graph (tensor/device_graph.h): the device's stream is captured
// while the work runs, and the graph is instantiated once and launched on every replay.
#include <functional>
#include <memory>

#include "../tensor/device_graph.h"

namespace mg::cuda {

std::unique_ptr<DeviceGraph> capture_graph(int device, const std::function<void()>& work);

// Whether device's stream is being captured now: copies that would leave or enter host memory
// refuse to run then, since a replay would repeat them against stale host memory.
bool capturing(int device);

}  // namespace mg::cuda
