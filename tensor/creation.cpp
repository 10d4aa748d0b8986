#include "creation.h"

#include <cmath>
#include <limits>
#include <mutex>
#include <type_traits>
#include <utility>

#include "backend.h"
#include "kernels.h"
#include "philox.h"

namespace mg {
namespace {

Backend& backend(const Tensor& t) { return backend_for(t.device()); }

// Writes row-major values into a fresh CPU tensor of dtype, then moves it to device.
template <typename V>
Tensor from_values(const V* values, int64_t count, const Shape& shape, DType dtype, Device device) {
  Tensor host = Tensor::empty(shape, dtype, kCPU);
  MG_CHECK(count == host.numel(), "tensor: ", count, " values do not fill shape ", shape_str(shape), " (",
           host.numel(), " elements)");
  dispatch_dtype(dtype, [&]<typename T>() {
    T* out = host.data_ptr<T>();
    for (int64_t i = 0; i < count; ++i) {
      if constexpr (std::is_same_v<T, int64_t> && std::is_floating_point_v<V>) {
        MG_CHECK(std::isfinite(values[i]) && std::abs(values[i]) < 9.3e18, "tensor: value ", values[i],
                 " does not fit int64");
      }
      out[i] = static_cast<T>(values[i]);
    }
  });
  return kernels::to_device(host, device);
}

Generator& pick(Generator* gen) { return gen != nullptr ? *gen : default_generator(); }

std::mutex& generator_mutex() {
  static std::mutex mutex;
  return mutex;
}

// Reads the seed and reserves numel counters (under a lock: the default generator is shared).
std::pair<uint64_t, uint64_t> reserve(Generator& gen, int64_t numel) {
  std::lock_guard<std::mutex> lock(generator_mutex());
  const uint64_t seed = gen.seed();
  return {seed, gen.advance(static_cast<uint64_t>(numel))};
}

Tensor random_tensor(const char* op, const Shape& shape, DType dtype, Device device, Generator* gen,
                     RandomKind kind, double a, double b) {
  if (kind != RandomKind::Integer)
    MG_CHECK(is_floating(dtype), op, ": dtype ", dtype, " is not supported (needs float32 or float64)");
  Tensor out = Tensor::empty(shape, dtype, device);
  if (out.numel() == 0) return out;
  const auto [seed, offset] = reserve(pick(gen), out.numel());
  backend(out).random(out, kind, seed, offset, a, b);
  return out;
}

}  // namespace

Tensor empty(const Shape& shape, DType dtype, Device device) { return Tensor::empty(shape, dtype, device); }

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor out = Tensor::empty(shape, dtype, device);
  if (out.numel() > 0) backend(out).fill(out, value);
  return out;
}

Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }

Tensor zeros_like(const Tensor& t) { return full(t.shape(), 0.0, t.dtype(), t.device()); }
Tensor ones_like(const Tensor& t) { return full(t.shape(), 1.0, t.dtype(), t.device()); }
Tensor full_like(const Tensor& t, double value) { return full(t.shape(), value, t.dtype(), t.device()); }
Tensor empty_like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), t.device()); }

Tensor arange(double end, DType dtype, Device device) { return arange(0.0, end, 1.0, dtype, device); }

Tensor arange(double start, double end, double step, DType dtype, Device device) {
  MG_CHECK(std::isfinite(start) && std::isfinite(end) && std::isfinite(step), "arange: start ", start, ", end ", end,
           " and step ", step, " must be finite");
  MG_CHECK(step != 0.0, "arange: step must be nonzero");
  const double count = std::ceil((end - start) / step);
  MG_CHECK(count >= 0.0, "arange: step ", step, " goes away from end (start ", start, ", end ", end, ")");
  MG_CHECK(count < 9.0e18, "arange: ", count, " elements is too many");
  Tensor out = Tensor::empty({static_cast<int64_t>(count)}, dtype, device);
  if (out.numel() > 0) backend(out).arange(out, start, step);
  return out;
}

Tensor linspace(double start, double end, int64_t steps, DType dtype, Device device) {
  MG_CHECK(steps >= 0, "linspace: number of steps must be non-negative, got ", steps);
  Tensor out = Tensor::empty({steps}, dtype, device);
  if (steps > 0) backend(out).arange(out, start, steps == 1 ? 0.0 : (end - start) / static_cast<double>(steps - 1));
  return out;
}

Tensor tensor(std::initializer_list<double> values, DType dtype, Device device) {
  const int64_t n = static_cast<int64_t>(values.size());
  return from_values(values.begin(), n, {n}, dtype, device);
}

Tensor tensor(const std::vector<double>& values, const Shape& shape, DType dtype, Device device) {
  return from_values(values.data(), static_cast<int64_t>(values.size()), shape, dtype, device);
}

Tensor tensor(const std::vector<float>& values, const Shape& shape, Device device) {
  return from_values(values.data(), static_cast<int64_t>(values.size()), shape, kFloat32, device);
}

Tensor tensor(const std::vector<int64_t>& values, const Shape& shape, Device device) {
  return from_values(values.data(), static_cast<int64_t>(values.size()), shape, kInt64, device);
}

Tensor scalar(double value, DType dtype, Device device) { return full({}, value, dtype, device); }

Generator& default_generator() {
  static Generator generator(0);
  return generator;
}

void manual_seed(uint64_t seed) {
  std::lock_guard<std::mutex> lock(generator_mutex());
  default_generator().set_state(seed, 0);
}

Tensor rand(const Shape& shape, DType dtype, Device device, Generator* gen) {
  return random_tensor("rand", shape, dtype, device, gen, RandomKind::Uniform, 0.0, 1.0);
}

Tensor randn(const Shape& shape, DType dtype, Device device, Generator* gen) {
  return random_tensor("randn", shape, dtype, device, gen, RandomKind::Normal, 0.0, 1.0);
}

Tensor uniform(const Shape& shape, double low, double high, DType dtype, Device device, Generator* gen) {
  MG_CHECK(std::isfinite(low) && std::isfinite(high) && low <= high, "uniform: need finite low <= high, got low ",
           low, " and high ", high);
  return random_tensor("uniform", shape, dtype, device, gen, RandomKind::Uniform, low, high);
}

Tensor normal(const Shape& shape, double mean, double std, DType dtype, Device device, Generator* gen) {
  MG_CHECK(std::isfinite(mean) && std::isfinite(std) && std >= 0.0, "normal: need finite mean and std >= 0, got mean ",
           mean, " and std ", std);
  return random_tensor("normal", shape, dtype, device, gen, RandomKind::Normal, mean, std);
}

Tensor randint(int64_t low, int64_t high, const Shape& shape, Device device, Generator* gen) {
  MG_CHECK(high > low, "randint: high (", high, ") must be greater than low (", low, ")");
  return random_tensor("randint", shape, kInt64, device, gen, RandomKind::Integer, static_cast<double>(low),
                       static_cast<double>(high));
}

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key) {
  const philox::Block out =
      philox::philox4x32_10(philox::Block{{counter[0], counter[1], counter[2], counter[3]}}, key[0], key[1]);
  return {out.v[0], out.v[1], out.v[2], out.v[3]};
}

}  // namespace mg
