#pragma once
// Run-time choice of the GEMM micro-kernels behind mg::matmul on the CPU. The default is the
// widest instruction set the CPU supports, or the one named by the environment variable
// MG_GEMM_KERNEL (avx512 | avx2 | generic) when the CPU supports it.
#include <string>
#include <string_view>
#include <vector>

namespace mg::cpu {

// The kernel set in use: "avx512", "avx2" or "generic".
const char* gemm_kernel_name();
// Switches the whole process to the named kernel set; false (and no change) when this CPU or
// build does not support it. Not meant to race with running GEMMs.
bool set_gemm_kernel(std::string_view name);
// The kernel sets this CPU supports, widest first.
std::vector<std::string> gemm_kernels_supported();

}  // namespace mg::cpu
