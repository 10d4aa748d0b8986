// The vectorised float32 transcendental loops of vec_math.h, one clone per vector ISA.
#include "simd.h"
#include "vec_math.h"

namespace mg::cpu::vec {

MG_VECTORIZE void exp_f32(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = exp_f32(x[i]);
}

MG_VECTORIZE void sigmoid_f32(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = sigmoid_f32(x[i]);
}

MG_VECTORIZE void tanh_f32(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = tanh_f32(x[i]);
}

MG_VECTORIZE void gelu_tanh_f32(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu_tanh_f32(x[i]);
}

MG_VECTORIZE void gelu_erf_f32(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu_erf_f32(x[i]);
}

}  // namespace mg::cpu::vec
