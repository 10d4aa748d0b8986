#pragma once
// The 16-lane helpers below are always inlined, so their by-value vector ABI never reaches a
// call boundary; g++ and clang warn about it in baseline (no AVX-512) builds all the same.
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
// Branch-free float32 exp and the functions built on it, written so that a loop calling them
// vectorises (std::exp does not without -ffast-math). Accuracy: within 2 ulp of std::exp over
// the whole float range (tests/tensor_test.cpp sweeps it); -inf -> 0, +inf -> +inf, NaN -> NaN,
// overflow -> +inf, results below the normal range are subnormal or 0 as std::exp's.
//
// The array kernels (cpu_vec_math.cpp) are compiled per vector ISA (simd.h). float64 keeps the
// C library's functions: it is the dtype of reference and gradcheck runs, not of speed.
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

namespace mg::cpu::vec {

// c ? a : b on the bits. A ?: on floats becomes a branch when g++ (without -fno-trapping-math)
// will not compute both arms unconditionally, and a branch stops vectorisation.
[[gnu::always_inline]] inline float select_f32(bool c, float a, float b) {
  const uint32_t mask = 0u - static_cast<uint32_t>(c);
  return std::bit_cast<float>((std::bit_cast<uint32_t>(a) & mask) | (std::bit_cast<uint32_t>(b) & ~mask));
}

// c0 x^k + c1 x^(k-1) + ... + ck by Horner's rule, for a float or 16 lanes: ((c0 x + c1) x + c2)...,
// the same operations in the same order as written out.
template <typename T>
[[gnu::always_inline]] inline T horner_from(const T& p, const T&) {
  return p;
}
template <typename T, typename... C>
[[gnu::always_inline]] inline T horner_from(const T& p, const T& x, float c, C... rest) {
  return horner_from<T>(p * x + c, x, rest...);
}
template <typename T, typename... C>
[[gnu::always_inline]] inline T horner(const T& x, float c0, float c1, C... rest) {
  return horner_from<T>(c0 * x + c1, x, rest...);
}

// Adding 1.5 * 2^23 rounds a float to an integer n held in the sum's low mantissa bits.
inline constexpr float kExpShifter = 12582912.0f;

// exp(x) = p 2^n, the part every exp below shares, for a float or 16 lanes: returns p = exp(r)
// on |r| <= ln2 / 2 and leaves n = round(x / ln2) in the low bits of `shifted` (the 1.5 * 2^23
// shifter: kExpShifter's bits plus n; round to nearest, no float->int conversion). x must be
// within [-104, 89] or NaN.
template <typename T>
[[gnu::always_inline]] inline T exp_reduced(const T& x, T& shifted) {
  shifted = x * 1.44269504088896341f + kExpShifter;
  const T n = shifted - kExpShifter;
  // r = x - n ln2 with ln2 in two parts: n * 0.693359375 is exact for |n| < 2^15.
  T r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  // exp(r) on |r| <= ln2 / 2 (Cephes expf's minimax coefficients).
  const T r2 = r * r;
  const T p = horner(r, 1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f,
                     5.0000001201e-1f);
  return p * r2 + r + 1.0f;
}

// kNonPositive: the caller promises x <= 0 or NaN (a softmax term x - max, a log-probability),
// which drops the upper clamp (exact for any x below 88.7, where exp(x) is finite).
template <bool kNonPositive = false>
[[gnu::always_inline]] inline float exp_f32(float x) {
  // Outside [-104, 89] exp is 0 or inf in float; clamping keeps 2^n representable as two
  // normal factors below. The comparisons are false for NaN, which passes through the clamps
  // and every operation after them, so NaN comes out without a test of its own.
  float xc = select_f32(x < -104.0f, -104.0f, x);
  if constexpr (!kNonPositive) xc = select_f32(xc > 89.0f, 89.0f, xc);
  float shifted;
  const float p = exp_reduced(xc, shifted);
  const int32_t ni = std::bit_cast<int32_t>(shifted) - std::bit_cast<int32_t>(kExpShifter);
  // 2^n as 2^(n/2) * 2^(n - n/2): both factors normal for n in [-150, 129], so subnormal results
  // and overflow to inf come out of the last multiply, rounded once.
  const int32_t n1 = ni >> 1;
  const int32_t n2 = ni - n1;
  const float s1 = std::bit_cast<float>(static_cast<int32_t>(static_cast<uint32_t>(n1 + 127) << 23));
  const float s2 = std::bit_cast<float>(static_cast<int32_t>(static_cast<uint32_t>(n2 + 127) << 23));
  return p * s1 * s2;
}

// The range where exp_normal_f32 and exp16_normal (below) compute exp_f32's bits: for
// kNonPositive, x in [kExpNormalFloor, 0]; otherwise |x| <= kExpNormalBound. x >= -86.5 rounds
// to n >= -125, where p 2^n (p >= 0.7) is a normal float, and x <= 86.5 to n <= 125, far from
// overflow.
inline constexpr float kExpNormalFloor = -86.5f;
inline constexpr float kExpNormalBound = 86.5f;

[[gnu::always_inline]] inline float abs_f32(float x) {
  return std::bit_cast<float>(std::bit_cast<uint32_t>(x) & 0x7fffffffu);
}

[[gnu::always_inline]] inline float copysign_f32(float magnitude, float sign) {
  return std::bit_cast<float>((std::bit_cast<uint32_t>(magnitude) & 0x7fffffffu) |
                              (std::bit_cast<uint32_t>(sign) & 0x80000000u));
}

// log(x) = e ln2 + log(m) with x = m 2^e, m in [sqrt(1/2), sqrt 2): Cephes logf's reduction and
// polynomial, with ln2 in two parts. log_normal_f32 is the whole of it for a positive, normal,
// finite x; log_f32 also scales subnormal x by 2^25 first and returns 0 -> -inf, +inf -> +inf,
// x < 0 -> NaN, NaN -> NaN (its own payload). Within 1 ulp of the exact value (tests/tensor_test.cpp
// sweeps the positive floats).
// scale_exponent: the power of two x was scaled by (0 or 25).
[[gnu::always_inline]] inline float log_scaled_f32(float x, float scale_exponent) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  // The exponent field of a positive float; m = the significand in [0.5, 1).
  float e = static_cast<float>(static_cast<int32_t>(bits >> 23) - 126) - scale_exponent;
  float m = std::bit_cast<float>((bits & 0x007fffffu) | 0x3f000000u);
  const bool low = m < 0.707106781186547524f;
  e = select_f32(low, e - 1.0f, e);
  m = select_f32(low, m + m, m) - 1.0f;
  const float z = m * m;
  const float p = horner(m, 7.0376836292e-2f, -1.1514610310e-1f, 1.1676998740e-1f, -1.2420140846e-1f, 1.4249322787e-1f,
                         -1.6668057665e-1f, 2.0000714765e-1f, -2.4999993993e-1f, 3.3333331174e-1f);
  float y = m * z * p + e * -2.12194440e-4f;
  y = y - 0.5f * z;
  return m + y + e * 0.693359375f;
}
[[gnu::always_inline]] inline float log_normal_f32(float x) { return log_scaled_f32(x, 0.0f); }
// Whether x is positive, normal and finite (log_normal_f32's domain), as one unsigned comparison
// of its bits less the smallest normal's: zero, subnormals and negative x wrap around to large keys.
inline constexpr uint32_t kSmallestNormalBits = 0x00800000u;
inline constexpr uint32_t kLargestNormalKey = 0x7f7fffffu - kSmallestNormalBits;
[[gnu::always_inline]] inline uint32_t normal_key(float x) { return std::bit_cast<uint32_t>(x) - kSmallestNormalBits; }

[[gnu::always_inline]] inline float log_f32(float x) {
  const bool subnormal = x < 1.17549435e-38f;
  float r = log_scaled_f32(select_f32(subnormal, x * 33554432.0f, x), select_f32(subnormal, 25.0f, 0.0f));
  r = select_f32(x == std::bit_cast<float>(0x7f800000u), x, r);
  r = select_f32(x == 0.0f, std::bit_cast<float>(0xff800000u), r);
  r = select_f32(x < 0.0f, std::bit_cast<float>(0x7fc00000u), r);
  return select_f32(x != x, x, r);
}

// Never exp of a large positive number's negation in a way that loses the tail: for x -> -inf,
// exp(-x) -> inf and the quotient -> 0. Written once for a float or 16 lanes (T) and an exp of
// the same type, which the array loops (cpu_vec_math.cpp) pick per block.
template <typename T, typename Exp>
[[gnu::always_inline]] inline T sigmoid_by(const T& x, Exp exp) {
  return 1.0f / (1.0f + exp(-x));
}
[[gnu::always_inline]] inline float sigmoid_f32(float x) {
  return sigmoid_by(
      x, [](float v) __attribute__((always_inline)) { return exp_f32(v); });
}

// exp_f32's bits for |x| <= kExpNormalBound (above), where 2^n is one normal factor: n goes
// straight into p's exponent field, without the clamps and the split scaling (the 16-lane form
// is exp16_normal, which also flags lanes outside the range).
[[gnu::always_inline]] inline float exp_normal_f32(float x) {
  float shifted;
  const float p = exp_reduced(x, shifted);
  return std::bit_cast<float>(std::bit_cast<uint32_t>(p) + (std::bit_cast<uint32_t>(shifted) << 23));
}

[[gnu::always_inline]] inline float tanh_f32(float x) {
  const float ax = abs_f32(x);
  // Small |x|: odd polynomial (Cephes tanhf), since 1 - 2 / (e^2x + 1) cancels near 0.
  const float z = x * x;
  const float p =
      horner(z, -5.70498872745e-3f, 2.06390887954e-2f, -5.37397155531e-2f, 1.33314422036e-1f, -3.33332819422e-1f);
  // The copysign keeps tanh(-0) = -0 (the sum gives +0).
  const float small = copysign_f32(p * z * x + x, x);
  // tanh(10) rounds to 1, so clamping |x| there keeps exp's argument in its normal range. A NaN
  // x takes the small branch (its comparison is false), which carries it.
  const float clamped = select_f32(ax < 10.0f, ax, 10.0f);
  const float large = copysign_f32(1.0f - 2.0f / (exp_normal_f32(2.0f * clamped) + 1.0f), x);
  return select_f32(ax >= 0.625f, large, small);
}

// 0.5 x (1 + tanh(u)) = x sigmoid(2u): the same function without the cancellation of 1 + tanh
// for negative x. T and Exp as for sigmoid_by.
template <typename T, typename Exp>
[[gnu::always_inline]] inline T gelu_tanh_by(const T& x, Exp exp) {
  const T u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return x / (1.0f + exp(-2.0f * u));
}
[[gnu::always_inline]] inline float gelu_tanh_f32(float x) {
  return gelu_tanh_by(
      x, [](float v) __attribute__((always_inline)) { return exp_f32(v); });
}

// x Phi(x) = 0.5 x erfc(-x / sqrt 2), with erfc from its Chebyshev fit t exp(-z^2 + P(t)),
// t = 1 / (1 + |z| / 2) (Numerical Recipes' erfcc: relative error below 1.2e-7 for z >= 0) and
// erfc(z) = 2 - erfc(-z) for z < 0. Unlike 0.5 x (1 + erf(x / sqrt 2)) this keeps its relative
// accuracy for negative x, where the result is tiny.
// In two stages, for float or 16 lanes (T): gelu_erf_exponent gives the exponent -a^2 + P(t),
// a = |x| / sqrt 2, and t / 2; gelu_erf_finish multiplies out. One element's chain of dependent
// operations (a division, P, exp) runs longer than the out-of-order window covers, so the array
// loop (cpu_vec_math.cpp) runs the first stage over a block before the second: 1.7x the rate of
// the one-pass loop on the AVX-512 machine of bench/RESULTS.md.
template <typename T>
[[gnu::always_inline]] inline T gelu_erf_exponent(const T& abs_x, T& half_t) {
  const T a = abs_x * 0.70710678118654752f;
  const T t = 1.0f / (1.0f + 0.5f * a);
  const T p = horner(t, 0.17087277f, -0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f, -0.18628806f, 0.09678418f,
                     0.37409196f, 1.00002368f, -1.26551223f);
  half_t = 0.5f * t;
  return p - a * a;
}
// exp_of_exponent = exp(gelu_erf_exponent(...)): r = t exp(...) = erfc(|z|), and with z = -x / sqrt 2
// the result is x (1 - r / 2) for x > 0, x r / 2 otherwise (x = +inf gives inf, not inf * 0).
[[gnu::always_inline]] inline float gelu_erf_finish(float x, float half_t, float exp_of_exponent) {
  const float half_r = half_t * exp_of_exponent;
  return x * select_f32(x > 0.0f, 1.0f - half_r, half_r);
}
[[gnu::always_inline]] inline float gelu_erf_f32(float x) {
  float half_t;
  // The exponent is log(erfc(a) (1 + a / 2)) <= 0 (up to the fit's error near a = 0).
  const float exponent = gelu_erf_exponent(abs_f32(x), half_t);
  return gelu_erf_finish(x, half_t, exp_f32<true>(exponent));
}

// erf(x): x P(x^2) for |x| < 1 (Cephes erff's polynomial: relative error below 2e-7), otherwise
// sign(x) (1 - erfc(|x|)) with erfc on [1, 4] from a degree-15 Chebyshev fit in s = (|x| - 2.5) / 1.5
// (absolute error 1e-9); beyond 4, 1 - erfc rounds to 1. No exp and no division: one element's
// operations are independent Horner chains. +-inf -> +-1, NaN -> NaN (the clamp keeps it).
[[gnu::always_inline]] inline float erf_f32(float x) {
  const float z = x * x;
  const float p = horner(z, 7.853861353153693e-5f, -8.010193625184903e-4f, 5.188327685732524e-3f,
                         -2.685381193529856e-2f, 1.128358514861418e-1f, -3.761262582423300e-1f, 1.128379165726710e+0f);
  const float a = abs_f32(x);
  const float s = select_f32(a > 4.0f, 1.0f, a * 0.666666667f - 1.66666667f);
  const float q = horner(s, 1.62065818807e-4f, -2.6081955906e-4f, -7.04792603869e-4f, 2.04290023432e-3f,
                         -6.24549626459e-4f, -4.68133513438e-3f, 9.70703842816e-3f, -6.62776526891e-3f,
                         -9.28936369876e-3f, 3.18647668417e-2f, -4.64508855961e-2f, 4.36521241677e-2f,
                         -2.81816822125e-2f, 1.22527874645e-2f, -3.26742532988e-3f, 4.06952492049e-4f);
  return select_f32(a < 1.0f, x * p, copysign_f32(1.0f - q, x));
}

// log1p(e) / e for e in [0, 1]: a degree-9 Chebyshev fit (relative error below 8e-9). With it,
// softplus needs one exp and no log or division.
template <typename T>
[[gnu::always_inline]] inline T log1p_ratio(const T& e) {
  return horner(e, -3.17605701843e-3f, 1.9542527261e-2f, -5.63736128301e-2f, 1.05436237954e-1f, -1.52696670744e-1f,
                1.96632742572e-1f, -2.49516162629e-1f, 3.33297104989e-1f, -4.99998926481e-1f, 9.99999994656e-1f);
}

// softplus(x) = max(x, 0) + log1p(e), e = exp(-|x|) in (0, 1].
[[gnu::always_inline]] inline float softplus_f32(float x) {
  const float e = exp_f32<true>(-abs_f32(x));
  return select_f32(x > 0.0f, x, 0.0f) + e * log1p_ratio(e);
}

// sin(x) and cos(x) for |x| <= kSinCosBound: x = q pi/2 + r, |r| <= pi/4, with pi/2 in four
// parts, the first three of 8, 11 and 11 bits: q times each is exact for q < 2^13, and where r
// is small the differences are exact too, so r's error is that of the last product, about 1e-14.
// Then Cephes sinf's and cosf's polynomials on r, chosen and signed by the quadrant (cos(x) =
// sin(|x| + pi/2): one quadrant on). Beyond the bound, and for inf and NaN, the array loop and
// the scalar path use the C library.
inline constexpr float kSinCosBound = 8192.0f;
template <bool kCos>
[[gnu::always_inline]] inline float sin_cos_reduced_f32(float x) {
  const float ax = abs_f32(x);
  const float shifted = ax * 0.636619772367581343f + kExpShifter;
  const float q = shifted - kExpShifter;
  const uint32_t quadrant = std::bit_cast<uint32_t>(shifted) + (kCos ? 1u : 0u);
  float r = ax - q * 1.5703125f;
  r = r - q * 4.837512969970703125e-4f;
  r = r - q * 7.549533620476723e-8f;
  r = r - q * 2.5633440682570896e-12f;
  const float z = r * r;
  float s = horner(z, -1.9515295891e-4f, 8.3321608736e-3f, -1.6666654611e-1f);
  s = s * z * r + r;
  float c = horner(z, 2.443315711809948e-5f, -1.388731625493765e-3f, 4.166664568298827e-2f);
  c = c * z * z - 0.5f * z + 1.0f;
  const float v = select_f32((quadrant & 1u) != 0, c, s);
  // Quadrants 2 and 3 negate; sin is odd, cos even.
  uint32_t sign = (quadrant & 2u) << 30;
  if constexpr (!kCos) sign ^= std::bit_cast<uint32_t>(x) & 0x80000000u;
  return std::bit_cast<float>(std::bit_cast<uint32_t>(v) ^ sign);
}

[[gnu::always_inline]] inline float sin_f32(float x) {
  return abs_f32(x) <= kSinCosBound ? sin_cos_reduced_f32<false>(x) : std::sin(x);
}
[[gnu::always_inline]] inline float cos_f32(float x) {
  return abs_f32(x) <= kSinCosBound ? sin_cos_reduced_f32<true>(x) : std::cos(x);
}

// sign(x) in {-1, 0, 1}; +0 for either zero, NaN -> NaN.
[[gnu::always_inline]] inline float sign_f32(float x) {
  const float s = select_f32(x > 0.0f, 1.0f, 0.0f) - select_f32(x < 0.0f, 1.0f, 0.0f);
  return select_f32(x != x, x, s);
}

// 16 float lanes as one value (GCC/Clang vector extensions), for reductions, which the
// auto-vectoriser will not reassociate. Two representations of the same lanes:
//   vf16   one 64-byte vector: one register in an AVX-512 clone. Without AVX-512 the compiler has
//          no machine mode for it and keeps it in memory, storing and reloading it around every
//          operation (the AVX2 clone of softmax ran at a tenth of its AVX-512 rate per lane).
//   vf8x2  two 32-byte vectors: two registers in an AVX2 clone.
// The kernels are templates on the lane type and pick one at run time (wide_lanes()); lane j is
// the same element either way and every reduction adds the lanes in the same order, so both give
// the same bits.
// The helpers are always inlined into the (cloned) loops, so the calling convention for 64-byte
// vectors, which differs with and without AVX-512 (g++'s -Wpsabi note, raised at every use),
// never applies. The note is off for the files that include this header: CPU kernels only. For
// the same reason no vector crosses a call that is not inlined, even in a debug build:
// __builtin_bit_cast, not std::bit_cast (a function whose default-ISA instantiation would be
// called from an AVX-512 clone with another calling convention).
using vf16 = float __attribute__((vector_size(64)));
using vi16 = int32_t __attribute__((vector_size(64)));
using vf8 = float __attribute__((vector_size(32)));
using vi8 = int32_t __attribute__((vector_size(32)));
constexpr int kVecWidth = 16;

// Unaligned views for loads and stores: one vector move in the clone's ISA, where a memcpy of a
// vector is expanded before the function is cloned, for the baseline ISA.
using vf16_unaligned = float __attribute__((vector_size(64), aligned(4), may_alias));
using vf8_unaligned = float __attribute__((vector_size(32), aligned(4), may_alias));

struct vi8x2 {
  vi8 lo, hi;
};
struct vf8x2 {
  vf8 lo, hi;
};

#define MG_LANES_OP(T, S, op)                                                                                  \
  [[gnu::always_inline]] inline T operator op(const T& a, const T& b) { return {a.lo op b.lo, a.hi op b.hi}; } \
  [[gnu::always_inline]] inline T operator op(const T& a, S b) { return {a.lo op b, a.hi op b}; }              \
  [[gnu::always_inline]] inline T operator op(S a, const T& b) { return {a op b.lo, a op b.hi}; }
#define MG_LANES_COMPARE(op)                                                        \
  [[gnu::always_inline]] inline vi8x2 operator op(const vf8x2& a, const vf8x2& b) { \
    return {a.lo op b.lo, a.hi op b.hi};                                            \
  }                                                                                 \
  [[gnu::always_inline]] inline vi8x2 operator op(const vf8x2& a, float b) { return {a.lo op b, a.hi op b}; }
MG_LANES_OP(vf8x2, float, +)
MG_LANES_OP(vf8x2, float, -)
MG_LANES_OP(vf8x2, float, *)
MG_LANES_OP(vf8x2, float, /)
MG_LANES_OP(vi8x2, int32_t, +)
MG_LANES_OP(vi8x2, int32_t, -)
MG_LANES_OP(vi8x2, int32_t, &)
MG_LANES_OP(vi8x2, int32_t, |)
MG_LANES_COMPARE(<)
MG_LANES_COMPARE(>)
MG_LANES_COMPARE(>=)
MG_LANES_COMPARE(<=)
MG_LANES_COMPARE(!=)
#undef MG_LANES_OP
#undef MG_LANES_COMPARE
[[gnu::always_inline]] inline vi8x2 operator~(const vi8x2& a) { return {~a.lo, ~a.hi}; }
[[gnu::always_inline]] inline vf8x2 operator-(const vf8x2& a) { return {-a.lo, -a.hi}; }
[[gnu::always_inline]] inline vi8x2 operator>>(const vi8x2& a, int b) { return {a.lo >> b, a.hi >> b}; }
[[gnu::always_inline]] inline vi8x2 operator<<(const vi8x2& a, int b) { return {a.lo << b, a.hi << b}; }
[[gnu::always_inline]] inline vf8x2& operator+=(vf8x2& a, const vf8x2& b) { return a = a + b; }
[[gnu::always_inline]] inline vi8x2& operator|=(vi8x2& a, const vi8x2& b) { return a = a | b; }
[[gnu::always_inline]] inline vi8x2 operator<(const vi8x2& a, int32_t b) { return {a.lo < b, a.hi < b}; }
[[gnu::always_inline]] inline vi8x2 operator>(const vi8x2& a, int32_t b) { return {a.lo > b, a.hi > b}; }

// Whether this CPU has AVX-512, where the 16 lanes are one register (vf16).
inline bool wide_lanes() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool wide = __builtin_cpu_supports("avx512f");
  return wide;
#else
  return false;
#endif
}

// Calls fn<V>(args...) with this CPU's lane type; inside a cloned function, fn must be always
// inlined so that it is compiled for the clone's ISA.
#define MG_WITH_LANES(fn, ...) \
  (::mg::cpu::vec::wide_lanes() ? fn<::mg::cpu::vec::vf16>(__VA_ARGS__) : fn<::mg::cpu::vec::vf8x2>(__VA_ARGS__))

template <typename V>
[[gnu::always_inline]] inline V load16(const float* p) {
  if constexpr (std::is_same_v<V, vf16>) {
    return *reinterpret_cast<const vf16_unaligned*>(p);
  } else {
    return {*reinterpret_cast<const vf8_unaligned*>(p), *reinterpret_cast<const vf8_unaligned*>(p + 8)};
  }
}
[[gnu::always_inline]] inline void store16(float* p, const vf16& v) { *reinterpret_cast<vf16_unaligned*>(p) = v; }
[[gnu::always_inline]] inline void store16(float* p, const vf8x2& v) {
  *reinterpret_cast<vf8_unaligned*>(p) = v.lo;
  *reinterpret_cast<vf8_unaligned*>(p + 8) = v.hi;
}
template <typename V>
[[gnu::always_inline]] inline V splat16(float x) {
  if constexpr (std::is_same_v<V, vf16>) {
    return vf16{} + x;
  } else {
    return {vf8{} + x, vf8{} + x};
  }
}
// The integer lanes of a float lane type: what its comparisons give.
template <typename V>
using int_lanes = decltype(std::declval<V>() < 0.0f);

template <typename V>
[[gnu::always_inline]] inline V select16(const int_lanes<V>& mask, const V& a, const V& b) {
  using I = int_lanes<V>;
  return __builtin_bit_cast(V, (__builtin_bit_cast(I, a) & mask) | (__builtin_bit_cast(I, b) & ~mask));
}
template <typename V>
[[gnu::always_inline]] inline V abs16(const V& x) {
  return __builtin_bit_cast(V, __builtin_bit_cast(int_lanes<V>, x) & 0x7fffffff);
}
// The largest |x| whose gelu_erf exponent is at least kExpNormalFloor, with a margin: the
// exponent is -79.2 there (tests/tensor_test.cpp checks the whole range).
inline constexpr float kGeluErfNormalBound = 12.5f;

// gelu_erf_finish on 16 lanes.
template <typename V>
[[gnu::always_inline]] inline V gelu_erf_finish16(const V& x, const V& half_t, const V& exp_of_exponent) {
  const V half_r = half_t * exp_of_exponent;
  return x * select16<V>(x > 0.0f, 1.0f - half_r, half_r);
}
// a where a > b, else b (b for a NaN a): the comparison and choice of x86's max instruction,
// which g++ emits for this conditional (one operation, where a select is two).
[[gnu::always_inline]] inline vf16 max16(const vf16& a, const vf16& b) { return a > b ? a : b; }
[[gnu::always_inline]] inline vf8x2 max16(const vf8x2& a, const vf8x2& b) {
  return {a.lo > b.lo ? a.lo : b.lo, a.hi > b.hi ? a.hi : b.hi};
}

// exp_f32 on 16 lanes, the same operations in the same order (identical results): exp_reduced,
// then the scaling by 2^n.
template <typename V, bool kNonPositive>
[[gnu::always_inline]] inline V exp16_reduced(const V& x, int_lanes<V>& n) {
  V xc = select16<V>(x < -104.0f, splat16<V>(-104.0f), x);
  if constexpr (!kNonPositive) xc = select16<V>(xc > 89.0f, splat16<V>(89.0f), xc);
  V shifted;
  const V p = exp_reduced<V>(xc, shifted);
  n = __builtin_bit_cast(int_lanes<V>, shifted) - std::bit_cast<int32_t>(kExpShifter);
  return p;
}

template <typename V, bool kNonPositive = false>
[[gnu::always_inline]] inline V exp16(const V& x) {
  int_lanes<V> ni;
  const V p = exp16_reduced<V, kNonPositive>(x, ni);
  const auto n1 = ni >> 1;
  const auto n2 = ni - n1;
  const V s1 = __builtin_bit_cast(V, (n1 + 127) << 23);
  const V s2 = __builtin_bit_cast(V, (n2 + 127) << 23);
  return p * s1 * s2;
}

// exp16<V, kNonPositive> inside the range of kExpNormalFloor and kExpNormalBound, with n added straight into p's
// exponent field: the same bits as exp16 there, with no clamp binding, for one integer shift and add in place of the
// clamps, seven integer operations and two multiplies (the exp of a softmax row is bound by those). Lanes outside the
// range or NaN come out wrong and set `outside` (one comparison, false for NaN), for the caller to redo them with
// exp16. bits(p) + (bits(shifted) << 23) in unsigned lanes: the lanes exp16_normal flags may hold any n, and their
// (discarded) sums may wrap.
[[gnu::always_inline]] inline vf16 add_to_exponent(const vf16& p, const vf16& shifted) {
  using vu16 = uint32_t __attribute__((vector_size(64)));
  return __builtin_bit_cast(vf16, __builtin_bit_cast(vu16, p) + (__builtin_bit_cast(vu16, shifted) << 23));
}
[[gnu::always_inline]] inline vf8x2 add_to_exponent(const vf8x2& p, const vf8x2& shifted) {
  using vu8 = uint32_t __attribute__((vector_size(32)));
  return {__builtin_bit_cast(vf8, __builtin_bit_cast(vu8, p.lo) + (__builtin_bit_cast(vu8, shifted.lo) << 23)),
          __builtin_bit_cast(vf8, __builtin_bit_cast(vu8, p.hi) + (__builtin_bit_cast(vu8, shifted.hi) << 23))};
}

template <typename V, bool kNonPositive = true>
[[gnu::always_inline]] inline V exp16_normal(const V& x, int_lanes<V>& outside) {
  if constexpr (kNonPositive) {
    outside |= ~(x >= kExpNormalFloor);
  } else {
    outside |= ~(abs16(x) <= kExpNormalBound);
  }
  V shifted;
  const V p = exp_reduced<V>(x, shifted);
  // kExpShifter's bits end in nine zeros, so shifting `shifted` left by 23 leaves n << 23.
  return add_to_exponent(p, shifted);
}

[[gnu::always_inline]] inline float hmax16(const vf16& v) {
  float m = v[0];
#pragma GCC unroll 16
  for (int j = 1; j < kVecWidth; ++j) m = v[j] > m ? v[j] : m;
  return m;
}
[[gnu::always_inline]] inline float hmax16(const vf8x2& v) {
  float m = v.lo[0];
#pragma GCC unroll 8
  for (int j = 1; j < 8; ++j) m = v.lo[j] > m ? v.lo[j] : m;
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) m = v.hi[j] > m ? v.hi[j] : m;
  return m;
}
// Whether any lane of a comparison's result is set.
[[gnu::always_inline]] inline bool any16(const vi16& m) {
  int32_t bits = 0;
#pragma GCC unroll 16
  for (int j = 0; j < kVecWidth; ++j) bits |= m[j];
  return bits != 0;
}
[[gnu::always_inline]] inline bool any16(const vi8x2& m) {
  const vi8 both = m.lo | m.hi;
  int32_t bits = 0;
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) bits |= both[j];
  return bits != 0;
}
[[gnu::always_inline]] inline double hsum16(const vf16& v) {
  double s = 0.0;
#pragma GCC unroll 16
  for (int j = 0; j < kVecWidth; ++j) s += static_cast<double>(v[j]);
  return s;
}
[[gnu::always_inline]] inline double hsum16(const vf8x2& v) {
  double s = 0.0;
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) s += static_cast<double>(v.lo[j]);
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) s += static_cast<double>(v.hi[j]);
  return s;
}

// Array forms, y[i] = f(x[i]); x and y may be the same array.
void exp_f32(const float* x, float* y, int64_t n);
void sigmoid_f32(const float* x, float* y, int64_t n);
void tanh_f32(const float* x, float* y, int64_t n);
void log_f32(const float* x, float* y, int64_t n);
void erf_f32(const float* x, float* y, int64_t n);
void softplus_f32(const float* x, float* y, int64_t n);
void sin_f32(const float* x, float* y, int64_t n);
void cos_f32(const float* x, float* y, int64_t n);
void sign_f32(const float* x, float* y, int64_t n);
void gelu_tanh_f32(const float* x, float* y, int64_t n);
void gelu_erf_f32(const float* x, float* y, int64_t n);

}  // namespace mg::cpu::vec
