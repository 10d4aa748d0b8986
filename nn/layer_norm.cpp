#include "layer_norm.h"

#include "../tensor/creation.h"
#include "functional.h"
#include "init.h"

namespace mg::nn {

LayerNorm::LayerNorm(Shape normalized_shape, double eps, bool elementwise_affine)
    : normalized_shape_(std::move(normalized_shape)), eps_(eps), affine_(elementwise_affine) {
  MG_CHECK(!normalized_shape_.empty(), "LayerNorm: normalized_shape must not be empty");
  for (int64_t s : normalized_shape_)
    MG_CHECK(s > 0, "LayerNorm: normalized_shape ", shape_str(normalized_shape_), " has a non-positive size");
  if (elementwise_affine) {
    register_parameter("weight", ones(normalized_shape_));
    register_parameter("bias", zeros(normalized_shape_));
  }
}

void LayerNorm::reset_parameters() {
  if (Tensor w = param("weight"); w.defined()) init::ones_(w);
  if (Tensor b = param("bias"); b.defined()) init::zeros_(b);
}

Tensor LayerNorm::forward(const Params& params, const Tensor& x) {
  if (!affine_) return functional::layer_norm(x, normalized_shape_, Tensor(), Tensor(), eps_);
  return functional::layer_norm(x, normalized_shape_, params["weight"], params["bias"], eps_);
}

}  // namespace mg::nn
