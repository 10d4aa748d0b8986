#pragma once
#include <cstdint>

#include "module.h"

namespace mg::nn {

// Normalises over the trailing normalized_shape dims; weight (ones) and bias (zeros) of that
// shape when elementwise_affine, as PyTorch.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true);
  explicit LayerNorm(int64_t normalized_size, double eps = 1e-5, bool elementwise_affine = true)
      : LayerNorm(Shape{normalized_size}, eps, elementwise_affine) {}
  std::string type_name() const override { return "LayerNorm"; }
  using Module::forward;
  Tensor forward(const Params& params, const Tensor& x) override;
  void reset_parameters();

  const Shape& normalized_shape() const { return normalized_shape_; }
  double eps() const { return eps_; }
  bool elementwise_affine() const { return affine_; }

 private:
  Shape normalized_shape_;
  double eps_;
  bool affine_;
};

}  // namespace mg::nn
