#pragma once
// The CUDA backend: own kernels (cuda_*.cu) and cuBLAS. tensor/backend.cpp asks for it the first
// time a tensor on a cuda device is made, and registers it for DeviceType::CUDA then.
namespace mg {
class Backend;
}

namespace mg::cuda {

// The backend when this process sees at least one CUDA device, null otherwise (no driver, no
// device, CUDA_VISIBLE_DEVICES empty). Never throws, never aborts.
Backend* backend_if_device_present();

}  // namespace mg::cuda
