#pragma once
// Gradient clipping, as torch.nn.utils.clip_grad_norm_ / clip_grad_value_ (PyTorch 1.13).
// Parameters without a gradient are skipped. The gradients are changed in place.
#include <vector>

#include "../tensor/tensor.h"
#include "tensor_dict.h"

namespace mg::nn {

// Treats all gradients as one vector; when its norm_type-norm (norm_type > 0, or infinity for the
// largest magnitude) exceeds max_norm, scales every gradient by max_norm / (norm + 1e-6). Returns
// the norm before clipping (0 when no parameter has a gradient). The norms are accumulated in
// float64 whatever the gradients' dtype. A non-finite norm spoils the gradients as in PyTorch (an
// infinite one scales by 0, so infinite elements turn NaN; a NaN one makes them all NaN), unless
// error_if_nonfinite asks for an mg::Error instead, thrown before anything is scaled.
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);
double clip_grad_norm_(const TensorDict& params, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);

// Clamps every gradient element to [-clip_value, clip_value]; clip_value must be >= 0.
void clip_grad_value_(const std::vector<Tensor>& params, double clip_value);
void clip_grad_value_(const TensorDict& params, double clip_value);

}  // namespace mg::nn
