#pragma once
// Functional forms of the image layers (Conv2d, MaxPool2d, BatchNorm2d): every parameter and
// statistic is an argument, so a MAML inner loop can run them on fast weights. conv2d and
// max_pool2d are the differentiable ops of autograd/ops.h, re-exported so that F::conv2d reads
// as in PyTorch.
#include <cstdint>

#include "../autograd/ops.h"
#include "../tensor/tensor.h"

namespace mg::nn::functional {

using mg::conv2d;
using mg::fold2d;
using mg::max_pool2d;
using mg::unfold2d;

// torch.nn.functional.batch_norm for x [N,C,H,W], normalising each channel over (N, H, W).
//   training: normalise with the batch's statistics (biased variance), and, when running_mean and
//     running_var [C] are given, move them towards the batch's (unbiased variance) by
//     momentum: r = (1 - momentum) r + momentum * batch. The update is in place, under no-grad
//     and from detached values, so no tape ever runs through the running statistics.
//   !training: normalise with running_mean and running_var, which must be given.
// weight and bias [C] may be undefined (no affine transform). Composed of differentiable ops,
// so the result is differentiable to any order in x, weight and bias.
Tensor batch_norm2d(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                    const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5);

}  // namespace mg::nn::functional
