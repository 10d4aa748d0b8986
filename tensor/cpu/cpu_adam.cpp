// The fused Adam / AdamW step: one pass over param, grad and the moment buffers, each element
// updated with the composite's operations in the composite's order (see Backend::AdamStep), so
// the result is the same to the bit. Cloned for AVX2 and baseline only, not AVX-512 (simd.h):
// AVX-512F carries FMA, which would change rounding. Built with -fno-math-errno
// (CMakeLists.txt): sqrt then vectorises; values are unchanged.
#include <array>
#include <cmath>

#include "cpu_kernels.h"
#include "parallel.h"

// g++ only: clang (14) does not multiversion function templates, so there the loops are
// compiled once for the baseline ISA.
#if defined(__x86_64__) && defined(__ELF__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(MG_NO_TARGET_CLONES)
#define MG_ADAM_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MG_ADAM_CLONES
#endif

namespace mg::cpu {
namespace {

// torch.maximum(kept, fresh): NaN in either wins. Written without branches so the loop vectorises.
template <typename T>
inline T nan_max(T kept, T fresh) {
  const T larger = fresh > kept ? fresh : kept;
  return fresh != fresh ? fresh : larger;
}

// The options are template parameters so that the loop has no branches and vectorises. AVX2
// (no FMA in that target) widens the loop without changing a bit; AVX-512F would allow FMA.
template <typename T, bool Maximize, bool L2, bool Decoupled, bool Amsgrad>
MG_ADAM_CLONES void adam_span(T* p, const T* g_in, T* m, T* v, T* vmax, const Backend::AdamStep& s, int64_t n) {
  // Every scalar is rounded to T first, as the composite's 0-d operands are.
  const T decay = static_cast<T>(s.decay_factor), wd = static_cast<T>(s.weight_decay);
  const T beta1 = static_cast<T>(s.beta1), one_minus_beta1 = static_cast<T>(1.0 - s.beta1);
  const T beta2 = static_cast<T>(s.beta2), one_minus_beta2 = static_cast<T>(1.0 - s.beta2);
  const T bc2 = static_cast<T>(s.bias_correction2_sqrt), eps = static_cast<T>(s.eps);
  const T neg_step = static_cast<T>(-s.step_size);
  for (int64_t i = 0; i < n; ++i) {
    T g = g_in[i];
    if constexpr (Maximize) g = -g;
    T pi = p[i];
    if constexpr (Decoupled) pi = pi * decay;
    if constexpr (L2) g = g + pi * wd;
    const T mi = m[i] * beta1 + g * one_minus_beta1;
    const T vi = v[i] * beta2 + g * one_minus_beta2 * g;
    m[i] = mi;
    v[i] = vi;
    T second = vi;
    if constexpr (Amsgrad) {
      second = nan_max(vmax[i], vi);
      vmax[i] = second;
    }
    const T denom = std::sqrt(second) / bc2 + eps;
    p[i] = pi + mi * neg_step / denom;
  }
}

template <typename T, bool Maximize, bool L2, bool Decoupled, bool Amsgrad>
void adam_loop(T* p, const T* g, T* m, T* v, T* vmax, const Backend::AdamStep& s, int64_t n) {
  parallel_for(n, 8, [=, &s](int64_t begin, int64_t end) {
    adam_span<T, Maximize, L2, Decoupled, Amsgrad>(p + begin, g + begin, m + begin, v + begin,
                                                   vmax != nullptr ? vmax + begin : nullptr, s, end - begin);
  });
}

template <typename T, bool... Flags>
void adam_dispatch(const std::array<bool, 4>& flags, T* p, const T* g, T* m, T* v, T* vmax, const Backend::AdamStep& s,
                   int64_t n) {
  if constexpr (sizeof...(Flags) == 4) {
    adam_loop<T, Flags...>(p, g, m, v, vmax, s, n);
  } else {
    if (flags[sizeof...(Flags)])
      adam_dispatch<T, Flags..., true>(flags, p, g, m, v, vmax, s, n);
    else
      adam_dispatch<T, Flags..., false>(flags, p, g, m, v, vmax, s, n);
  }
}

}  // namespace

void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
               const Tensor& max_exp_avg_sq, const Backend::AdamStep& step) {
  dispatch_floating(param.dtype(), "adam_step", [&]<typename T>() {
    const bool decay = step.weight_decay != 0.0;
    adam_dispatch<T>({step.maximize, decay && !step.decoupled, decay && step.decoupled, step.amsgrad},
                     param.data_ptr<T>(), grad.data_ptr<T>(), exp_avg.data_ptr<T>(), exp_avg_sq.data_ptr<T>(),
                     step.amsgrad ? max_exp_avg_sq.data_ptr<T>() : nullptr, step, param.numel());
  });
}

}  // namespace mg::cpu
