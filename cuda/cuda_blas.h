#pragma once
// Settings of the cuBLAS products behind matmul on CUDA tensors. Free of CUDA's headers.
namespace mg::cuda {

// float32 products on tensor cores in TF32 (10-bit mantissa inputs, float32 accumulation): several
// times faster on sm_80+, but no longer float32-accurate, so off unless asked for. Process-wide.
void set_allow_tf32(bool allow);
bool allow_tf32();

}  // namespace mg::cuda
