// The fused Adam / AdamW step, one thread per element: the composite update's operations in the
// composite's order, each scalar rounded to the tensors' dtype first (see Backend::AdamStep and
// ../tensor/cpu/cpu_adam.cpp). Without FMA contraction the result is the CPU's to the bit.
#include "cuda_kernels.h"
#include "cuda_launch.cuh"

namespace mg::cuda {
namespace {

template <typename T>
struct AdamScalars {
  T decay, wd, beta1, one_minus_beta1, beta2, one_minus_beta2, bc2, eps, neg_step;
  bool maximize, l2, decoupled, amsgrad;
};

// torch.maximum(kept, fresh): NaN in either wins.
template <typename T>
__device__ __forceinline__ T nan_max(T kept, T fresh) {
  const T larger = fresh > kept ? fresh : kept;
  return fresh != fresh ? fresh : larger;
}

template <typename T>
__global__ void adam_kernel(T* p, const T* grad, T* m, T* v, T* vmax, AdamScalars<T> s, int64_t n) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += stride) {
    T g = grad[i];
    if (s.maximize) g = -g;
    T pi = p[i];
    if (s.decoupled) pi = pi * s.decay;
    if (s.l2) g = g + pi * s.wd;
    const T mi = m[i] * s.beta1 + g * s.one_minus_beta1;
    const T vi = v[i] * s.beta2 + g * s.one_minus_beta2 * g;
    m[i] = mi;
    v[i] = vi;
    T second = vi;
    if (s.amsgrad) {
      second = nan_max(vmax[i], vi);
      vmax[i] = second;
    }
    const T denom = sqrt(second) / s.bc2 + s.eps;
    p[i] = pi + mi * s.neg_step / denom;
  }
}

}  // namespace

void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
               const Tensor& max_exp_avg_sq, const Backend::AdamStep& step) {
  dispatch_floating(param.dtype(), "adam_step", [&]<typename T>() {
    const bool decay = step.weight_decay != 0.0;
    const AdamScalars<T> s{static_cast<T>(step.decay_factor),
                           static_cast<T>(step.weight_decay),
                           static_cast<T>(step.beta1),
                           static_cast<T>(1.0 - step.beta1),
                           static_cast<T>(step.beta2),
                           static_cast<T>(1.0 - step.beta2),
                           static_cast<T>(step.bias_correction2_sqrt),
                           static_cast<T>(step.eps),
                           static_cast<T>(-step.step_size),
                           step.maximize,
                           decay && !step.decoupled,
                           decay && step.decoupled,
                           step.amsgrad};
    const int64_t n = param.numel();
    adam_kernel<T><<<blocks_for(n), kThreads, 0, stream_of(param)>>>(
        ptr<T>(param), ptr<const T>(grad), ptr<T>(exp_avg), ptr<T>(exp_avg_sq),
        step.amsgrad ? ptr<T>(max_exp_avg_sq) : nullptr, s, n);
    MG_CUDA_CHECK_LAUNCH("adam_step");
  });
}

}  // namespace mg::cuda
