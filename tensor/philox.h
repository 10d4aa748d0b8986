#pragma once
// Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11), exactly
// as in Random123, and the mapping from one Philox block to one sample. Header-only and free of
// the standard library's containers so that the CUDA backend compiles the very same functions:
// a seed gives the same numbers on every device.
//
// The mapping (any backend must reproduce it bit for bit, up to the last ulp of libm):
//   element i of a draw that starts at counter `offset` uses
//     counter = {lo32(offset + i), hi32(offset + i), 0, 0},  key = {lo32(seed), hi32(seed)}
//   and r = philox4x32_10(counter, key). Only r[0] and r[1] are used.
//   Uniform [a, b):
//     float32: u = (r[0] >> 8) * 2^-24                                  (24 bits, u in [0, 1))
//     float64: u = ((uint64(r[0]) << 21) ^ (r[1] >> 11)) * 2^-53          (53 bits, u in [0, 1))
//     value = a + (b - a) * u, computed in double, rounded to the dtype, and if rounding
//     reached b (b > a), the largest value of the dtype below b.
//   Normal(mean a, std b), Box-Muller, first output only:
//     u1 = (r[0] + 1) * 2^-32 in (0, 1] (never log(0)),  u2 = r[1] * 2^-32 in [0, 1)
//     z = sqrt(-2 log u1) * cos(2 pi u2),  value = a + b * z, computed in double, then rounded.
//   Integer [a, b):
//     bits = uint64(r[0]) | uint64(r[1]) << 32,  value = a + bits % (b - a)   (b - a as uint64).
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MG_HOST_DEVICE __host__ __device__
#else
#define MG_HOST_DEVICE
#endif

namespace mg::philox {

struct Block {
  uint32_t v[4];
};

inline constexpr uint32_t kMul0 = 0xD2511F53u;
inline constexpr uint32_t kMul1 = 0xCD9E8D57u;
inline constexpr uint32_t kWeyl0 = 0x9E3779B9u;
inline constexpr uint32_t kWeyl1 = 0xBB67AE85u;

MG_HOST_DEVICE inline void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t product = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(product >> 32);
  lo = static_cast<uint32_t>(product);
}

MG_HOST_DEVICE inline Block philox_round(const Block& c, uint32_t k0, uint32_t k1) {
  uint32_t hi0, lo0, hi1, lo1;
  mulhilo(kMul0, c.v[0], hi0, lo0);
  mulhilo(kMul1, c.v[2], hi1, lo1);
  return Block{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
}

// Ten rounds; the key is bumped by the Weyl constants between rounds.
MG_HOST_DEVICE inline Block philox4x32_10(Block counter, uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += kWeyl0;
      k1 += kWeyl1;
    }
    counter = philox_round(counter, k0, k1);
  }
  return counter;
}

// The block for element `index` (= offset + i) of a draw with this seed.
MG_HOST_DEVICE inline Block draw(uint64_t seed, uint64_t index) {
  const Block counter{{static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), 0u, 0u}};
  return philox4x32_10(counter, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

MG_HOST_DEVICE inline float uniform01_float(const Block& r) {
  return static_cast<float>(r.v[0] >> 8) * 0x1p-24f;
}

MG_HOST_DEVICE inline double uniform01_double(const Block& r) {
  const uint64_t bits = (static_cast<uint64_t>(r.v[0]) << 21) ^ (r.v[1] >> 11);
  return static_cast<double>(bits) * 0x1p-53;
}

MG_HOST_DEVICE inline double standard_normal(const Block& r) {
  const double u1 = (static_cast<double>(r.v[0]) + 1.0) * 0x1p-32;
  const double u2 = static_cast<double>(r.v[1]) * 0x1p-32;
  const double two_pi = 6.283185307179586476925286766559;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(two_pi * u2);
}

MG_HOST_DEVICE inline uint64_t bits64(const Block& r) {
  return static_cast<uint64_t>(r.v[0]) | (static_cast<uint64_t>(r.v[1]) << 32);
}

}  // namespace mg::philox
