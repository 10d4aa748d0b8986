#pragma once
// Queries about the CUDA devices visible to this process. Compiled only when metagrad is built
// with CUDA (MG_HAVE_CUDA); nothing outside cuda/ includes this header by name.
#include <string>

namespace mg {

// Number of CUDA devices this process can use; 0 on any error (no driver, driver too old,
// no device, CUDA_VISIBLE_DEVICES empty, ...). Never throws, never aborts.
int cuda_device_count();

// One line about device index: "cuda:0 NVIDIA H200, compute 9.0, 132 SMs, 139.8 GiB"; a line
// saying what failed when the device cannot be asked. Never throws.
std::string cuda_device_description(int index);

// "driver 13.0, runtime 13.0" (what cudaDriverGetVersion / cudaRuntimeGetVersion say).
std::string cuda_versions();

}  // namespace mg
