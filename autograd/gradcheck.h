#pragma once
// Numerical checks of the tape: gradcheck compares every entry of the Jacobian from reverse
// mode with central differences; gradgradcheck does the same for the gradient itself (the
// vector-Jacobian product as a function of the inputs and of the vector), which is what a
// second-order meta-gradient differentiates. Use float64 inputs.
#include <functional>
#include <string>

#include "node.h"

namespace mg {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  uint64_t seed = 0;  // for gradgradcheck's random output vector
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0.0;
  std::string message;  // where the first mismatch was, when !ok
  explicit operator bool() const { return ok; }
};

using TensorFunction = std::function<Tensor(const TensorList&)>;

// Inputs that require grad are checked; others (e.g. int64 indices) are passed through unchanged.
// Checked inputs must not be expanded views (one storage element may not stand for several).
GradcheckResult gradcheck(const TensorFunction& f, const TensorList& inputs, GradcheckOptions options = {});
GradcheckResult gradgradcheck(const TensorFunction& f, const TensorList& inputs, GradcheckOptions options = {});

}  // namespace mg
