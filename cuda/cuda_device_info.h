#pragma once
// Queries about the CUDA devices visible to this process. Compiled only when metagrad is built
// with CUDA (MG_HAVE_CUDA); nothing outside cuda/ includes this header by name.

namespace mg {

// Number of CUDA devices this process can use; 0 on any error (no driver, driver too old,
// no device, CUDA_VISIBLE_DEVICES empty, ...). Never throws, never aborts.
int cuda_device_count();

}  // namespace mg
