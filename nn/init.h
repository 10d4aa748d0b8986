#pragma once
// Weight initialisation with PyTorch's formulas (torch.nn.init), so that a model initialised
// here draws from the same distributions as its PyTorch twin (not the same numbers: our
// generator is Philox, theirs is MT19937). Each function fills a tensor in place, without
// recording on the tape, and returns it; gen == nullptr means mg::default_generator().
#include <cstdint>
#include <utility>

#include "../tensor/creation.h"
#include "../tensor/tensor.h"

namespace mg::nn::init {

enum class FanMode { FanIn, FanOut };
enum class Nonlinearity { Linear, Sigmoid, Tanh, ReLU, LeakyReLU, SELU };

// torch.nn.init.calculate_gain; param is the negative slope of LeakyReLU.
double calculate_gain(Nonlinearity nonlinearity, double param = 0.01);
// (fan_in, fan_out) of a weight of at least 2 dims: [out, in, *receptive field].
std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t);

Tensor uniform_(Tensor t, double low = 0.0, double high = 1.0, Generator* gen = nullptr);
Tensor normal_(Tensor t, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
Tensor constant_(Tensor t, double value);
Tensor zeros_(Tensor t);
Tensor ones_(Tensor t);

// Uniform on [-b, b] with b = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a).
// nn.Linear's default is kaiming_uniform_(w, sqrt(5)), i.e. b = 1 / sqrt(fan_in).
Tensor kaiming_uniform_(Tensor t, double a = 0.0, FanMode mode = FanMode::FanIn,
                        Nonlinearity nonlinearity = Nonlinearity::LeakyReLU, Generator* gen = nullptr);
Tensor kaiming_normal_(Tensor t, double a = 0.0, FanMode mode = FanMode::FanIn,
                       Nonlinearity nonlinearity = Nonlinearity::LeakyReLU, Generator* gen = nullptr);
// Uniform on [-b, b], b = gain * sqrt(6 / (fan_in + fan_out)); normal with std = gain * sqrt(2 / (fan_in + fan_out)).
Tensor xavier_uniform_(Tensor t, double gain = 1.0, Generator* gen = nullptr);
Tensor xavier_normal_(Tensor t, double gain = 1.0, Generator* gen = nullptr);

}  // namespace mg::nn::init
