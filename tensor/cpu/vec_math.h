#pragma once
#if defined(__clang__)
// The 16-lane helpers below are always inlined, so their by-value vector ABI never reaches a
// call boundary; clang warns about it in baseline (no AVX-512) builds all the same.
#pragma clang diagnostic ignored "-Wpsabi"
#endif
// Branch-free float32 exp and the functions built on it, written so that a loop calling them
// vectorises (std::exp does not without -ffast-math). Accuracy: within 2 ulp of std::exp over
// the whole float range (tests/tensor_test.cpp sweeps it); -inf -> 0, +inf -> +inf, NaN -> NaN,
// overflow -> +inf, results below the normal range are subnormal or 0 as std::exp's.
//
// The array kernels (cpu_vec_math.cpp) are compiled per vector ISA (simd.h). float64 keeps the
// C library's functions: it is the dtype of reference and gradcheck runs, not of speed.
#include <bit>
#include <cstdint>
#include <cstring>

namespace mg::cpu::vec {

// c ? a : b on the bits. A ?: on floats becomes a branch when g++ (without -fno-trapping-math)
// will not compute both arms unconditionally, and a branch stops vectorisation.
[[gnu::always_inline]] inline float select_f32(bool c, float a, float b) {
  const uint32_t mask = 0u - static_cast<uint32_t>(c);
  return std::bit_cast<float>((std::bit_cast<uint32_t>(a) & mask) | (std::bit_cast<uint32_t>(b) & ~mask));
}

[[gnu::always_inline]] inline float exp_f32(float x) {
  // Outside [-104, 89] exp is 0 or inf in float; clamping keeps 2^n representable as two
  // normal factors below. Comparisons let NaN through unchanged.
  float xc = select_f32(x < -104.0f, -104.0f, x);
  xc = select_f32(xc > 89.0f, 89.0f, xc);
  // n = round(x / ln2) by the 1.5 * 2^23 shifter (round to nearest, no float->int conversion).
  constexpr float kShifter = 12582912.0f;
  const float shifted = xc * 1.44269504088896341f + kShifter;
  const float n = shifted - kShifter;
  const int32_t ni = std::bit_cast<int32_t>(shifted) - std::bit_cast<int32_t>(kShifter);
  // r = x - n ln2 with ln2 in two parts: n * 0.693359375 is exact for |n| < 2^15.
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  // exp(r) on |r| <= ln2 / 2 (Cephes expf's minimax coefficients).
  const float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.0f;
  // 2^n as 2^(n/2) * 2^(n - n/2): both factors normal for n in [-150, 129], so subnormal results
  // and overflow to inf come out of the last multiply, rounded once.
  const int32_t n1 = ni >> 1;
  const int32_t n2 = ni - n1;
  const float s1 = std::bit_cast<float>(static_cast<int32_t>(static_cast<uint32_t>(n1 + 127) << 23));
  const float s2 = std::bit_cast<float>(static_cast<int32_t>(static_cast<uint32_t>(n2 + 127) << 23));
  const float y = p * s1 * s2;
  return select_f32(x != x, x, y);
}

[[gnu::always_inline]] inline float abs_f32(float x) {
  return std::bit_cast<float>(std::bit_cast<uint32_t>(x) & 0x7fffffffu);
}

[[gnu::always_inline]] inline float copysign_f32(float magnitude, float sign) {
  return std::bit_cast<float>((std::bit_cast<uint32_t>(magnitude) & 0x7fffffffu) |
                              (std::bit_cast<uint32_t>(sign) & 0x80000000u));
}

// Never exp of a large positive number's negation in a way that loses the tail: for x -> -inf,
// exp(-x) -> inf and the quotient -> 0.
[[gnu::always_inline]] inline float sigmoid_f32(float x) { return 1.0f / (1.0f + exp_f32(-x)); }

[[gnu::always_inline]] inline float tanh_f32(float x) {
  const float ax = abs_f32(x);
  // Small |x|: odd polynomial (Cephes tanhf), since 1 - 2 / (e^2x + 1) cancels near 0.
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float large = copysign_f32(1.0f - 2.0f / (exp_f32(2.0f * ax) + 1.0f), x);
  return select_f32(ax < 0.625f, small, large);
}

// 0.5 x (1 + tanh(u)) = x sigmoid(2u): the same function without the cancellation of 1 + tanh
// for negative x.
[[gnu::always_inline]] inline float gelu_tanh_f32(float x) {
  const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return x / (1.0f + exp_f32(-2.0f * u));
}

// x Phi(x) = 0.5 x erfc(-x / sqrt 2), with erfc from its Chebyshev fit t exp(-z^2 + P(t)),
// t = 1 / (1 + |z| / 2) (Numerical Recipes' erfcc: relative error below 1.2e-7 for z >= 0) and
// erfc(z) = 2 - erfc(-z) for z < 0. Unlike 0.5 x (1 + erf(x / sqrt 2)) this keeps its relative
// accuracy for negative x, where the result is tiny.
[[gnu::always_inline]] inline float gelu_erf_f32(float x) {
  const float z = x * -0.70710678118654752f;
  const float a = abs_f32(z);
  const float t = 1.0f / (1.0f + 0.5f * a);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  const float r = t * exp_f32(p - a * a);
  const float erfc_z = select_f32(z < 0.0f, 2.0f - r, r);
  return x * (0.5f * erfc_z);
}

// 16 floats as one value (GCC/Clang vector extensions): lowered to one AVX-512, two AVX2 or
// four SSE registers, whichever the enclosing clone targets. For reductions, which the
// auto-vectoriser will not reassociate.
// The helpers are always inlined into the (cloned) loops, so the calling convention for 64-byte
// vectors, which differs with and without AVX-512 (g++'s -Wpsabi note, raised at every use),
// never applies. The note is off for the files that include this header: CPU kernels only. For
// the same reason no vector crosses a call that is not inlined, even in a debug build:
// __builtin_bit_cast, not std::bit_cast (a function whose default-ISA instantiation would be
// called from an AVX-512 clone with another calling convention).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
using vf16 = float __attribute__((vector_size(64)));
using vi16 = int32_t __attribute__((vector_size(64)));
constexpr int kVecWidth = 16;

[[gnu::always_inline]] inline vf16 load16(const float* p) {
  vf16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
[[gnu::always_inline]] inline void store16(float* p, const vf16& v) { std::memcpy(p, &v, sizeof v); }
[[gnu::always_inline]] inline vf16 splat16(float x) { return vf16{} + x; }
[[gnu::always_inline]] inline vf16 select16(const vi16& mask, const vf16& a, const vf16& b) {
  return __builtin_bit_cast(vf16, (__builtin_bit_cast(vi16, a) & mask) | (__builtin_bit_cast(vi16, b) & ~mask));
}
[[gnu::always_inline]] inline vf16 max16(const vf16& a, const vf16& b) { return select16(a > b, a, b); }

// exp_f32 on 16 lanes, the same operations in the same order (identical results).
[[gnu::always_inline]] inline vf16 exp16(const vf16& x) {
  vf16 xc = select16(x < -104.0f, splat16(-104.0f), x);
  xc = select16(xc > 89.0f, splat16(89.0f), xc);
  constexpr float kShifter = 12582912.0f;
  const vf16 shifted = xc * 1.44269504088896341f + kShifter;
  const vf16 n = shifted - kShifter;
  const vi16 ni = __builtin_bit_cast(vi16, shifted) - std::bit_cast<int32_t>(kShifter);
  vf16 r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  const vf16 r2 = r * r;
  vf16 p = splat16(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.0f;
  const vi16 n1 = ni >> 1;
  const vi16 n2 = ni - n1;
  const vf16 s1 = __builtin_bit_cast(vf16, (n1 + 127) << 23);
  const vf16 s2 = __builtin_bit_cast(vf16, (n2 + 127) << 23);
  const vf16 y = p * s1 * s2;
  return select16(x != x, x, y);
}

[[gnu::always_inline]] inline float hmax16(const vf16& v) {
  float m = v[0];
  for (int j = 1; j < kVecWidth; ++j) m = v[j] > m ? v[j] : m;
  return m;
}
[[gnu::always_inline]] inline double hsum16(const vf16& v) {
  double s = 0.0;
  for (int j = 0; j < kVecWidth; ++j) s += static_cast<double>(v[j]);
  return s;
}

// Array forms, y[i] = f(x[i]); x and y may be the same array.
void exp_f32(const float* x, float* y, int64_t n);
void sigmoid_f32(const float* x, float* y, int64_t n);
void tanh_f32(const float* x, float* y, int64_t n);
void gelu_tanh_f32(const float* x, float* y, int64_t n);
void gelu_erf_f32(const float* x, float* y, int64_t n);

}  // namespace mg::cpu::vec
