#include "init.h"

#include <cmath>

#include "../autograd/grad_mode.h"
#include "../autograd/ops.h"

namespace mg::nn::init {
namespace {

// In-place fill of a parameter: the copy must not be recorded, and leaves stay leaves.
Tensor fill_from(Tensor t, const Tensor& values) {
  NoGradGuard no_grad;
  t.copy_(values);
  return t;
}

void check_floating(const char* fn, const Tensor& t) {
  MG_CHECK(t.defined(), "init.", fn, ": undefined tensor");
  MG_CHECK(is_floating(t.dtype()), "init.", fn, ": needs a floating tensor, got ", describe(t));
}

int64_t fan_for(const Tensor& t, FanMode mode) {
  const auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  return mode == FanMode::FanIn ? fan_in : fan_out;
}

}  // namespace

double calculate_gain(Nonlinearity nonlinearity, double param) {
  switch (nonlinearity) {
    case Nonlinearity::Linear:
    case Nonlinearity::Sigmoid:
      return 1.0;
    case Nonlinearity::Tanh:
      return 5.0 / 3.0;
    case Nonlinearity::ReLU:
      return std::sqrt(2.0);
    case Nonlinearity::LeakyReLU:
      return std::sqrt(2.0 / (1.0 + param * param));
    case Nonlinearity::SELU:
      return 3.0 / 4.0;
  }
  MG_FAIL("calculate_gain: unknown nonlinearity");
}

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  MG_CHECK(t.dim() >= 2, "init: fan in and fan out need a tensor of at least 2 dims, got ", describe(t));
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

Tensor uniform_(Tensor t, double low, double high, Generator* gen) {
  check_floating("uniform_", t);
  return fill_from(t, uniform(t.shape(), low, high, t.dtype(), t.device(), gen));
}

Tensor normal_(Tensor t, double mean, double std, Generator* gen) {
  check_floating("normal_", t);
  return fill_from(t, normal(t.shape(), mean, std, t.dtype(), t.device(), gen));
}

Tensor constant_(Tensor t, double value) {
  MG_CHECK(t.defined(), "init.constant_: undefined tensor");
  NoGradGuard no_grad;
  t.fill_(value);
  return t;
}

Tensor zeros_(Tensor t) { return constant_(std::move(t), 0.0); }
Tensor ones_(Tensor t) { return constant_(std::move(t), 1.0); }

Tensor kaiming_uniform_(Tensor t, double a, FanMode mode, Nonlinearity nonlinearity, Generator* gen) {
  check_floating("kaiming_uniform_", t);
  const int64_t fan = fan_for(t, mode);
  if (t.numel() == 0) return t;
  MG_CHECK(fan > 0, "init.kaiming_uniform_: fan is 0 for ", describe(t));
  const double bound = calculate_gain(nonlinearity, a) * std::sqrt(3.0 / static_cast<double>(fan));
  return uniform_(std::move(t), -bound, bound, gen);
}

Tensor kaiming_normal_(Tensor t, double a, FanMode mode, Nonlinearity nonlinearity, Generator* gen) {
  check_floating("kaiming_normal_", t);
  const int64_t fan = fan_for(t, mode);
  if (t.numel() == 0) return t;
  MG_CHECK(fan > 0, "init.kaiming_normal_: fan is 0 for ", describe(t));
  const double sigma = calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(fan));
  return normal_(std::move(t), 0.0, sigma, gen);
}

Tensor xavier_uniform_(Tensor t, double gain, Generator* gen) {
  check_floating("xavier_uniform_", t);
  const auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  if (t.numel() == 0) return t;
  const double bound = gain * std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
  return uniform_(std::move(t), -bound, bound, gen);
}

Tensor xavier_normal_(Tensor t, double gain, Generator* gen) {
  check_floating("xavier_normal_", t);
  const auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  if (t.numel() == 0) return t;
  const double sigma = gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
  return normal_(std::move(t), 0.0, sigma, gen);
}

}  // namespace mg::nn::init
