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

// conv2d with per-task weights (see functional.h): x [T,N,C,H,W], weight [T,O,C,kh,kw], bias
// [T,O] (or undefined) -> [T,N,O,oh,ow], each task's images convolved with its own weight.
Tensor conv2d_per_task(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), Size2d stride = 1,
                       Size2d padding = 0, Size2d dilation = 1);

// fn, an image op for [N,C,H,W] without per-task weights (pooling), applied to x [N,C,H,W] or to
// task-batched images [T,N,C,H,W], whose task dim is folded into the batch and split off again.
template <typename Fn>
Tensor over_task_images(const Tensor& x, Fn&& fn) {
  if (x.dim() != 5) return fn(x);
  const Tensor y = fn(reshape(x, {x.size(0) * x.size(1), x.size(2), x.size(3), x.size(4)}));
  return reshape(y, {x.size(0), x.size(1), y.size(1), y.size(2), y.size(3)});
}

// torch.nn.functional.batch_norm for x [N,C,H,W], normalising each channel over (N, H, W).
//   training: normalise with the batch's statistics (biased variance), and, when running_mean and
//     running_var [C] are given, move them towards the batch's (unbiased variance) by
//     momentum: r = (1 - momentum) r + momentum * batch. The update is in place, under no-grad
//     and from detached values, so no tape ever runs through the running statistics.
//   !training: normalise with running_mean and running_var, which must be given.
// weight and bias [C] may be undefined (no affine transform). Training goes through the fused
// mg::batch_norm, evaluation is composed of ops; both are differentiable to any order in x,
// weight and bias.
// Task-batched x [T,N,C,H,W], with weight and bias [T,C] when given: each task is normalised
// with its own statistics over (N, H, W) when training, and with the shared running statistics
// [C] otherwise. Training on it updates no running statistics (they are given only when not
// training): a caller that keeps them applies update_running_stats per task, in its own order.
Tensor batch_norm2d(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                    const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5);

// What batch_norm2d does to the running statistics when training, on its own: moves
// running_mean and running_var [C] towards the statistics of x [N,C,H,W] by momentum, in place,
// under no-grad.
void update_running_stats(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, double momentum);

// The last step of both: r = (1 - momentum) r + momentum * batch, for a batch's mean and unbiased
// variance [C], in place, under no-grad.
void blend_running_stats(const Tensor& running_mean, const Tensor& running_var, const Tensor& batch_mean,
                         const Tensor& batch_unbiased_var, double momentum);

}  // namespace mg::nn::functional
