#include "conv2d.h"

#include <cmath>

#include "functional_conv.h"
#include "init.h"

namespace mg::nn {

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, Size2d kernel_size, Size2d stride, Size2d padding,
               bool bias, Generator* gen)
    : in_channels_(in_channels),
      out_channels_(out_channels),
      kernel_(kernel_size),
      stride_(stride),
      padding_(padding),
      has_bias_(bias) {
  MG_CHECK(in_channels > 0 && out_channels > 0, "Conv2d: channel counts must be positive, got in_channels ",
           in_channels, ", out_channels ", out_channels);
  MG_CHECK(kernel_.h > 0 && kernel_.w > 0 && stride_.h > 0 && stride_.w > 0 && padding_.h >= 0 && padding_.w >= 0,
           "Conv2d: kernel size and stride must be positive and padding non-negative, got kernel (", kernel_.h, ",",
           kernel_.w, "), stride (", stride_.h, ",", stride_.w, "), padding (", padding_.h, ",", padding_.w, ")");
  register_parameter("weight", zeros({out_channels, in_channels, kernel_.h, kernel_.w}));
  if (bias) register_parameter("bias", zeros({out_channels}));
  reset_parameters(gen);
}

void Conv2d::reset_parameters(Generator* gen) {
  // The weight is drawn before the bias, from the same generator, as PyTorch does.
  init::kaiming_uniform_(param("weight"), std::sqrt(5.0), init::FanMode::FanIn, init::Nonlinearity::LeakyReLU, gen);
  if (Tensor b = param("bias"); b.defined()) {
    const double fan_in = static_cast<double>(in_channels_ * kernel_.h * kernel_.w);
    const double bound = 1.0 / std::sqrt(fan_in);
    init::uniform_(b, -bound, bound, gen);
  }
}

Tensor Conv2d::forward(const Params& params, const Tensor& x) {
  // A fast-weight set missing the bias is an error, not a silently bias-free convolution.
  const Tensor weight = params["weight"];
  const Tensor bias = has_bias_ ? params["bias"] : Tensor();
  if (weight.dim() == 5) return functional::conv2d_per_task(x, weight, bias, stride_, padding_);
  return functional::conv2d(x, weight, bias, stride_, padding_);
}

}  // namespace mg::nn
