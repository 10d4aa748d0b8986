#include "functional_conv.h"

#include <vector>

#include "../autograd/grad_mode.h"
#include "../tensor/backend.h"
#include "../tensor/kernels.h"
#include "functional.h"

namespace mg::nn::functional {
namespace {

// x is [N,C,H,W] or, per task, [T,N,C,H,W] with weight and bias [T,C] (the running statistics
// are [C] either way).
void check_channel_vector(const Tensor& t, const char* what, const Tensor& x, bool per_task) {
  if (!t.defined()) return;
  const int64_t c = x.size(-3);
  if (per_task) {
    MG_CHECK(t.dim() == 2 && t.size(1) == c, "batch_norm2d: ", what, " must be [T, ", c, "] for task-batched input ",
             describe(x), ", got ", describe(t));
    check_task_dim("batch_norm2d", x, 5, t);
  } else {
    MG_CHECK(t.dim() == 1 && t.size(0) == c, "batch_norm2d: ", what, " must be [", c, "] for input ", describe(x),
             ", got ", describe(t));
  }
  MG_CHECK(t.dtype() == x.dtype() && t.device() == x.device(), "batch_norm2d: ", what, " ", describe(t),
           " must have the input's dtype and device (", describe(x), ")");
}

// [C] -> [C,1,1], which broadcasts against [N,C,H,W] and [T,N,C,H,W]; [T,C] -> [T,1,C,1,1].
Tensor per_channel(const Tensor& t) {
  if (t.dim() == 1) return reshape(t, {t.size(0), 1, 1});
  return reshape(t, {t.size(0), 1, t.size(1), 1, 1});
}

// r = (1 - momentum) r + momentum * batch, from a batch's mean and biased variance [C] over
// count values (the running variance is unbiased).
void move_running_stats(const Tensor& running_mean, const Tensor& running_var, const Tensor& batch_mean,
                        const Tensor& batch_var, int64_t count, double momentum) {
  NoGradGuard no_grad;
  const double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
  blend_running_stats(running_mean, running_var, batch_mean, batch_var * unbias, momentum);
}

}  // namespace

void blend_running_stats(const Tensor& running_mean, const Tensor& running_var, const Tensor& batch_mean,
                         const Tensor& batch_unbiased_var, double momentum) {
  MG_CHECK(momentum >= 0.0 && momentum <= 1.0, "batch_norm2d: momentum must be in [0, 1], got ", momentum);
  NoGradGuard no_grad;
  Tensor(running_mean).copy_(running_mean * (1.0 - momentum) + batch_mean * momentum);
  Tensor(running_var).copy_(running_var * (1.0 - momentum) + batch_unbiased_var * momentum);
}

Tensor batch_norm2d(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                    const Tensor& bias, bool training, double momentum, double eps) {
  kernels::check_defined("batch_norm2d", x);
  MG_CHECK(x.dim() == 4 || x.dim() == 5,
           "batch_norm2d: expected a 4-D [N,C,H,W] input (or task-batched [T,N,C,H,W]), got ", describe(x));
  MG_CHECK(is_floating(x.dtype()), "batch_norm2d: needs a floating input, got ", describe(x));
  MG_CHECK(running_mean.defined() == running_var.defined(),
           "batch_norm2d: running_mean and running_var must be given together");
  const bool per_task = x.dim() == 5;
  check_channel_vector(running_mean, "running_mean", x, false);
  check_channel_vector(running_var, "running_var", x, false);
  check_channel_vector(weight, "weight", x, per_task);
  check_channel_vector(bias, "bias", x, per_task);
  MG_CHECK(eps >= 0.0, "batch_norm2d: eps must be >= 0, got ", eps);
  MG_CHECK(!(per_task && training && running_mean.defined()), "batch_norm2d: training on task-batched input ",
           describe(x), " updates no running statistics; apply update_running_stats to each task instead");

  if (training) {
    const int64_t count = x.size(-4) * x.size(-2) * x.size(-1);
    // As PyTorch: one value per channel has no variance to normalise by.
    MG_CHECK(count > 1, "batch_norm2d: expected more than 1 value per channel when training, got input ", describe(x));
    BatchNormStats stats;
    Tensor y = batch_norm(x, weight, bias, eps, &stats);
    if (running_mean.defined()) move_running_stats(running_mean, running_var, stats.mean, stats.var, count, momentum);
    return y;
  }
  MG_CHECK(running_mean.defined(), "batch_norm2d: running_mean and running_var are needed when not training");
  // Constants here: the running statistics are buffers, never differentiated.
  Tensor y = (x - per_channel(running_mean.detach())) * per_channel(rsqrt(running_var.detach() + eps));
  if (weight.defined()) y = y * per_channel(weight);
  if (bias.defined()) y = y + per_channel(bias);
  return y;
}

void update_running_stats(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, double momentum) {
  kernels::check_defined("update_running_stats", x);
  MG_CHECK(x.dim() == 4, "update_running_stats: expected a 4-D [N,C,H,W] input, got ", describe(x));
  MG_CHECK(running_mean.defined() && running_var.defined(),
           "update_running_stats: running_mean and running_var must be given");
  check_channel_vector(running_mean, "running_mean", x, false);
  check_channel_vector(running_var, "running_var", x, false);
  const int64_t count = x.size(0) * x.size(2) * x.size(3);
  MG_CHECK(count > 1, "update_running_stats: expected more than 1 value per channel, got input ", describe(x));
  NoGradGuard no_grad;
  const Tensor mu = mean(x.detach(), {0, 2, 3});
  const Tensor centered = x.detach() - reshape(mu, {x.size(1), 1, 1});
  move_running_stats(running_mean, running_var, mu, mean(centered * centered, {0, 2, 3}), count, momentum);
}

Tensor conv2d_per_task(const Tensor& x, const Tensor& weight, const Tensor& bias, Size2d stride, Size2d padding,
                       Size2d dilation) {
  kernels::check_defined("conv2d", x);
  kernels::check_defined("conv2d", weight, "weight");
  MG_CHECK(weight.dim() == 5, "conv2d: per-task weight must be 5-D [T, out_channels, in_channels, kh, kw], got ",
           describe(weight));
  check_task_dim("conv2d", x, 5, weight);
  MG_CHECK(x.dim() == 5, "conv2d: per-task weight ", describe(weight), " needs task-batched images [T,N,C,H,W], got ",
           describe(x));
  return mg::conv2d(x, weight, bias, stride, padding, dilation);
}

}  // namespace mg::nn::functional
