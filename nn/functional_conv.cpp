#include "functional_conv.h"

#include "../autograd/grad_mode.h"
#include "../tensor/kernels.h"

namespace mg::nn::functional {
namespace {

void check_channel_vector(const Tensor& t, const char* what, const Tensor& x) {
  if (!t.defined()) return;
  const int64_t c = x.size(1);
  MG_CHECK(t.dim() == 1 && t.size(0) == c, "batch_norm2d: ", what, " must be [", c, "] for input ", describe(x),
           ", got ", describe(t));
  MG_CHECK(t.dtype() == x.dtype() && t.device() == x.device(), "batch_norm2d: ", what, " ", describe(t),
           " must have the input's dtype and device (", describe(x), ")");
}

// [C] -> [C,1,1], which broadcasts against [N,C,H,W].
Tensor per_channel(const Tensor& t) { return reshape(t, {t.size(0), 1, 1}); }

}  // namespace

Tensor batch_norm2d(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                    const Tensor& bias, bool training, double momentum, double eps) {
  kernels::check_defined("batch_norm2d", x);
  MG_CHECK(x.dim() == 4, "batch_norm2d: expected a 4-D [N,C,H,W] input, got ", describe(x));
  MG_CHECK(is_floating(x.dtype()), "batch_norm2d: needs a floating input, got ", describe(x));
  MG_CHECK(running_mean.defined() == running_var.defined(),
           "batch_norm2d: running_mean and running_var must be given together");
  check_channel_vector(running_mean, "running_mean", x);
  check_channel_vector(running_var, "running_var", x);
  check_channel_vector(weight, "weight", x);
  check_channel_vector(bias, "bias", x);
  MG_CHECK(eps >= 0.0, "batch_norm2d: eps must be >= 0, got ", eps);

  Tensor y;
  if (training) {
    const int64_t count = x.size(0) * x.size(2) * x.size(3);
    // As PyTorch: one value per channel has no variance to normalise by.
    MG_CHECK(count > 1, "batch_norm2d: expected more than 1 value per channel when training, got input ",
             describe(x));
    Tensor mu = mean(x, {0, 2, 3}, true);
    Tensor centered = x - mu;
    Tensor var = mean(centered * centered, {0, 2, 3}, true);  // biased, for normalising
    y = centered * rsqrt(var + eps);
    if (running_mean.defined()) {
      MG_CHECK(momentum >= 0.0 && momentum <= 1.0, "batch_norm2d: momentum must be in [0, 1], got ", momentum);
      NoGradGuard no_grad;
      const double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
      const Tensor batch_mean = reshape(mu.detach(), {x.size(1)});
      const Tensor batch_var = reshape(var.detach(), {x.size(1)}) * unbias;
      Tensor(running_mean).copy_(running_mean * (1.0 - momentum) + batch_mean * momentum);
      Tensor(running_var).copy_(running_var * (1.0 - momentum) + batch_var * momentum);
    }
  } else {
    MG_CHECK(running_mean.defined(), "batch_norm2d: running_mean and running_var are needed when not training");
    // Constants here: the running statistics are buffers, never differentiated.
    y = (x - per_channel(running_mean.detach())) * per_channel(rsqrt(running_var.detach() + eps));
  }
  if (weight.defined()) y = y * per_channel(weight);
  if (bias.defined()) y = y + per_channel(bias);
  return y;
}

}  // namespace mg::nn::functional
