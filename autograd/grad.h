#pragma once
// Reverse mode: gradients of outputs with respect to inputs, optionally recorded on the tape
// so they can be differentiated again.
#include <functional>

#include "node.h"

namespace mg {

struct GradOptions {
  bool create_graph = false;  // record the backward pass, so the result is differentiable
  bool retain_graph = false;  // keep saved tensors for another backward (implied by create_graph)
  bool allow_unused = false;  // an input the outputs do not depend on gets an undefined gradient
};

// d(sum_i <grad_outputs[i], outputs[i]>) / d(inputs[j]) for each j. grad_outputs may be empty
// (or hold undefined tensors) for scalar outputs, which then use 1.
TensorList grad(const TensorList& outputs, const TensorList& inputs, const TensorList& grad_outputs = {},
                GradOptions options = {});

// Accumulates gradients of outputs into the .grad() of every leaf they depend on.
void backward(const TensorList& outputs, const TensorList& grad_outputs = {}, BackwardOptions options = {});

// Hessian-vector products: d/dx <grad f(x), v>, through double backward. f must return a scalar.
TensorList hvp(const std::function<Tensor(const TensorList&)>& f, const TensorList& inputs, const TensorList& v,
               GradOptions options = {});
// Jacobian-vector product J(x) v of f at inputs (forward mode through the double-backward trick).
Tensor jvp(const std::function<Tensor(const TensorList&)>& f, const TensorList& inputs, const TensorList& v,
           GradOptions options = {});

}  // namespace mg
