// Front ends of the fused batch-norm kernels, declared in kernels.h. The backend sees x as a
// contiguous [G, N, C, S] tensor (G = 1 unless task-batched, S = H * W) and the per-channel
// vectors as contiguous [G * C].
#include "kernels.h"

namespace mg::kernels {
namespace {

constexpr const char* kOp = "batch_norm";

Backend& backend(const Tensor& t) { return backend_for(t.device()); }

Tensor as_groups(const Tensor& x) {
  const bool per_task = x.dim() == 5;
  const int64_t groups = per_task ? x.size(0) : 1;
  const int64_t n = x.size(-4), c = x.size(-3), s = x.size(-2) * x.size(-1);
  return as_strided(x, {groups, n, c, s}, {n * c * s, c * s, s, 1}, x.offset());
}

Tensor flat(const Tensor& t) { return as_strided(t, {t.numel()}, {1}, t.offset()); }

// [C] for images, [T,C] for task-batched images.
Shape channel_shape(const Tensor& x) { return x.dim() == 5 ? Shape{x.size(0), x.size(2)} : Shape{x.size(1)}; }

void check_input(const Tensor& x) {
  check_defined(kOp, x);
  MG_CHECK(x.dim() == 4 || x.dim() == 5, kOp, ": expected a 4-D [N,C,H,W] input (or task-batched [T,N,C,H,W]), got ",
           describe(x));
  MG_CHECK(is_floating(x.dtype()), kOp, ": dtype ", x.dtype(), " is not supported (needs float32 or float64)");
}

void check_channel_vector(const Tensor& t, const char* what, const Tensor& x) {
  if (!t.defined()) return;
  const Shape expected = channel_shape(x);
  MG_CHECK(t.shape() == expected, kOp, ": ", what, " of shape ", shape_str(t.shape()), " does not match ",
           shape_str(expected), " for input ", describe(x));
  check_same_dtype(kOp, x, t);
  check_same_device(kOp, x, t);
}

}  // namespace

BatchNormResult batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  check_input(x);
  check_channel_vector(weight, "weight", x);
  check_channel_vector(bias, "bias", x);
  MG_CHECK(eps >= 0.0, kOp, ": eps must be >= 0, got ", eps);
  MG_CHECK(x.size(-4) * x.size(-2) * x.size(-1) > 0, kOp, ": needs at least one value per channel, got input ",
           describe(x));
  const Shape stats = channel_shape(x);
  BatchNormResult r{Tensor::empty(x.shape(), x.dtype(), x.device()), Tensor::empty(stats, x.dtype(), x.device()),
                    Tensor::empty(stats, x.dtype(), x.device()), Tensor::empty(stats, x.dtype(), x.device())};
  if (x.numel() == 0) return r;
  backend(r.out).batch_norm(as_groups(contiguous(x)), weight.defined() ? flat(contiguous(weight)) : Tensor(),
                            bias.defined() ? flat(contiguous(bias)) : Tensor(), eps, as_groups(r.out), flat(r.mean),
                            flat(r.var), flat(r.rstd));
  return r;
}

BatchNormGrads batch_norm_backward(const Tensor& x, const Tensor& grad, const Tensor& mean, const Tensor& rstd,
                                   const Tensor& weight, bool need_x, bool need_weight, bool need_bias) {
  check_input(x);
  check_defined(kOp, grad, "grad");
  MG_CHECK(grad.shape() == x.shape(), kOp, ": grad ", describe(grad), " does not match input ", describe(x));
  check_same_dtype(kOp, x, grad);
  check_same_device(kOp, x, grad);
  check_defined(kOp, mean, "mean");
  check_defined(kOp, rstd, "rstd");
  check_channel_vector(mean, "mean", x);
  check_channel_vector(rstd, "rstd", x);
  check_channel_vector(weight, "weight", x);
  const Shape stats = channel_shape(x);
  BatchNormGrads g;
  if (need_x) g.x = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (need_weight && weight.defined()) g.weight = Tensor::empty(stats, x.dtype(), x.device());
  if (need_bias) g.bias = Tensor::empty(stats, x.dtype(), x.device());
  if (!g.x.defined() && !g.weight.defined() && !g.bias.defined()) return g;
  if (x.numel() == 0) {
    for (Tensor* t : {&g.weight, &g.bias})
      if (t->defined()) t->fill_(0.0);
    return g;
  }
  backend(x).batch_norm_backward(
      as_groups(contiguous(x)), as_groups(contiguous(grad)), flat(contiguous(mean)), flat(contiguous(rstd)),
      weight.defined() ? flat(contiguous(weight)) : Tensor(), g.x.defined() ? as_groups(g.x) : Tensor(),
      g.weight.defined() ? flat(g.weight) : Tensor(), g.bias.defined() ? flat(g.bias) : Tensor());
  return g;
}

}  // namespace mg::kernels
