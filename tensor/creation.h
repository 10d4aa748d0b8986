#pragma once
// Making tensors: constants, ranges, values from C++ containers, and seeded random numbers.
#include <array>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "tensor.h"

namespace mg {

Tensor empty(const Shape& shape, DType dtype = kFloat32, Device device = kCPU);
Tensor zeros(const Shape& shape, DType dtype = kFloat32, Device device = kCPU);
Tensor ones(const Shape& shape, DType dtype = kFloat32, Device device = kCPU);
Tensor full(const Shape& shape, double value, DType dtype = kFloat32, Device device = kCPU);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
Tensor empty_like(const Tensor& t);

// [start, end) in steps of step; throws on step == 0 or a negative count.
Tensor arange(double end, DType dtype = kInt64, Device device = kCPU);
Tensor arange(double start, double end, double step = 1.0, DType dtype = kInt64, Device device = kCPU);
Tensor linspace(double start, double end, int64_t steps, DType dtype = kFloat32, Device device = kCPU);

// 1-D tensor from values: mg::tensor({0.5, 1.0, 2.0}, mg::kFloat64).
Tensor tensor(std::initializer_list<double> values, DType dtype = kFloat32, Device device = kCPU);
// From row-major values and a shape; throws when the counts disagree.
Tensor tensor(const std::vector<double>& values, const Shape& shape, DType dtype = kFloat32, Device device = kCPU);
Tensor tensor(const std::vector<float>& values, const Shape& shape, Device device = kCPU);
Tensor tensor(const std::vector<int64_t>& values, const Shape& shape, Device device = kCPU);
Tensor scalar(double value, DType dtype = kFloat32, Device device = kCPU);  // 0-d

// A counter-based generator (Philox 4x32-10): state is (seed, offset); each draw of n
// elements uses counters offset..offset+n-1 and advances offset, so the same seed gives
// the same numbers on any device.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed, offset_ = offset; }
  // Reserves n counters and returns the first.
  uint64_t advance(uint64_t n) {
    const uint64_t start = offset_;
    offset_ += n;
    return start;
  }

 private:
  uint64_t seed_ = 0;
  uint64_t offset_ = 0;
};

Generator& default_generator();
void manual_seed(uint64_t seed);

Tensor rand(const Shape& shape, DType dtype = kFloat32, Device device = kCPU, Generator* gen = nullptr);
Tensor randn(const Shape& shape, DType dtype = kFloat32, Device device = kCPU, Generator* gen = nullptr);
Tensor uniform(const Shape& shape, double low, double high, DType dtype = kFloat32, Device device = kCPU,
               Generator* gen = nullptr);
Tensor normal(const Shape& shape, double mean, double std, DType dtype = kFloat32, Device device = kCPU,
              Generator* gen = nullptr);
Tensor randint(int64_t low, int64_t high, const Shape& shape, Device device = kCPU, Generator* gen = nullptr);

// The raw Philox 4x32-10 block function, exposed for tests against published vectors.
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

}  // namespace mg
