#pragma once
// What batch_norm and layer_norm share in their backward: inputs (x, weight?, bias?) and saved
// tensors (x, mean, rstd, weight?), and a fused backward over (x, grad, mean, rstd[, weight]).
#include "node.h"

namespace mg {

// Which of a normalisation's inputs (x, weight, bias; weight and bias optional) need a gradient.
struct NormalizationNeeds {
  bool x, weight, bias;
};

inline NormalizationNeeds normalization_needs(const BackwardArgs& a, bool has_weight, bool has_bias) {
  return {a.needs_input(0), has_weight && a.needs_input(1), has_bias && a.needs_input(has_weight ? 2 : 1)};
}

// (x, grad, mean, rstd[, weight]) from the node's saved (x, mean, rstd[, weight]) and its grad.
inline TensorList normalization_backward_inputs(const BackwardArgs& a, bool has_weight) {
  TensorList in{a.saved[0], a.grad, a.saved[1], a.saved[2]};
  if (has_weight) in.push_back(a.saved[3]);
  return in;
}

}  // namespace mg
