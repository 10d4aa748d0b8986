#pragma once
// How a differentiable op puts itself on the tape:
//
//   Tensor y = kernels::unary(UnaryOp::Exp, x);
//   if (should_record(x))
//     record(OpId::exp, {x}, y, /*saved=*/{y}, [](const BackwardArgs& a) -> TensorList {
//       return {a.grad * a.saved[0]};
//     });
//
// Tensors a formula needs go through `saved` (version-checked, no cycles); shapes and other
// plain values may be captured by the lambda.
#include <initializer_list>

#include "grad_mode.h"
#include "node.h"

namespace mg {


template <typename... Ts>
bool should_record(const Ts&... inputs) {
  return GradMode::is_enabled() && (inputs.requires_grad() || ...);
}
bool should_record_list(const TensorList& inputs);
// The defined tensors among ts, in order: the inputs (or saved tensors) of an op whose weight
// and bias are optional.
TensorList defined_only(std::initializer_list<Tensor> ts);

// Creates the node (edges to each input's gradient node), makes it output's grad_fn and marks
// output as requiring grad. Must only be called when should_record(inputs...) holds.
void record(OpId op, TensorSpan inputs, const Tensor& output, TensorSpan saved, BackwardFn backward);

}  // namespace mg
