#include "linear.h"

#include <cmath>

#include "functional.h"
#include "init.h"

namespace mg::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, Generator* gen)
    : in_features_(in_features), out_features_(out_features), has_bias_(bias) {
  MG_CHECK(in_features >= 0 && out_features >= 0, "Linear: sizes must be non-negative, got in_features ", in_features,
           ", out_features ", out_features);
  register_parameter("weight", zeros({out_features, in_features}));
  if (bias) register_parameter("bias", zeros({out_features}));
  reset_parameters(gen);
}

void Linear::reset_parameters(Generator* gen) {
  init::kaiming_uniform_(param("weight"), std::sqrt(5.0), init::FanMode::FanIn, init::Nonlinearity::LeakyReLU, gen);
  if (Tensor b = param("bias"); b.defined()) {
    const double bound = in_features_ > 0 ? 1.0 / std::sqrt(static_cast<double>(in_features_)) : 0.0;
    init::uniform_(b, -bound, bound, gen);
  }
}

Tensor Linear::forward(const Params& params, const Tensor& x) {
  // A parameter set without the bias this layer has is an error, not a silent bias-free layer.
  return functional::linear(x, params["weight"], has_bias_ ? params["bias"] : Tensor());
}

}  // namespace mg::nn
