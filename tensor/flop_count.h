#pragma once
// The arithmetic of the CPU's matrix products, counted per thread: to set a workload's time
// against the machine's peak (bench/bench_meta reports it per meta-step).
#include <cstdint>

namespace mg {

// Floating-point operations (2 m n k per product, every batch entry counted) of the CPU matrix
// products that calls on this thread have run since it started, whatever threads ran the
// product itself. Convolutions count the products they run: im2col's GEMMs, or Winograd's
// products in the transformed domain.
int64_t cpu_matmul_flops_on_this_thread();

}  // namespace mg
