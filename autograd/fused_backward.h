#pragma once
// The backward of an op with a fused first-order kernel, when it is itself recorded (create_graph):
// the gradient's values still come from the kernel, and their own derivatives from the op's formula
// in differentiable ops, rebuilt (as a checkpoint) only when a later backward reaches them.
//
// Why not record the formula's values: they differ from the kernel's in the last bits, and a
// checkpointed inner step computes its gradients once without a graph and once with one, and
// checks that both give the same bits.
#include <functional>
#include <string>

#include "node.h"

namespace mg {

using BackwardFormula = std::function<TensorList(const TensorList& inputs)>;

// kernel(inputs) when nothing is recorded; otherwise the same values, differentiable through
// formula(inputs). Both must return the same list of (defined) tensors. Neither may draw random
// numbers: tasks on threads may rebuild the formula at once.
TensorList fused_backward(const std::string& name, const TensorList& inputs, BackwardFormula kernel,
                          BackwardFormula formula);

// One gradient per input of the node: the computed ones, in order, for the inputs that need one;
// undefined for the others.
TensorList to_needed_inputs(const BackwardArgs& a, const TensorList& computed);

}  // namespace mg
