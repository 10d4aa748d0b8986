#include "clip_grad.h"

#include <algorithm>
#include <cmath>

#include "../autograd/grad_mode.h"
#include "../autograd/ops.h"

namespace mg::nn {

namespace {

// The gradients that exist, detached: a gradient built with create_graph shares its storage with
// the detached handle, so scaling the latter in place scales what the parameter sees.
std::vector<Tensor> grads_of(const std::vector<Tensor>& params) {
  std::vector<Tensor> out;
  for (const Tensor& p : params) {
    MG_CHECK(p.defined(), "clip_grad: a parameter is an undefined tensor");
    const Tensor g = p.grad();
    if (g.defined()) out.push_back(g.detach());
  }
  return out;
}

// sum(|g|^p) in float64, or max |g| for p = inf.
double power_sum(const Tensor& grad, double norm_type) {
  if (grad.numel() == 0) return 0.0;
  const Tensor magnitude = abs(grad.to(kFloat64));
  if (std::isinf(norm_type)) return amax(magnitude).item();
  if (norm_type == 2.0) return sum(square(magnitude)).item();
  if (norm_type == 1.0) return sum(magnitude).item();
  return sum(pow(magnitude, norm_type)).item();
}

}  // namespace

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type, bool error_if_nonfinite) {
  MG_CHECK(norm_type > 0 && !std::isnan(norm_type), "clip_grad_norm_: norm_type must be > 0 or infinity, got ",
           norm_type);
  MG_CHECK(!std::isnan(max_norm) && max_norm >= 0, "clip_grad_norm_: max_norm must be >= 0, got ", max_norm);
  NoGradGuard no_grad;
  const std::vector<Tensor> grads = grads_of(params);
  if (grads.empty()) return 0.0;

  const bool inf_norm = std::isinf(norm_type);
  double total = 0.0;
  for (const Tensor& g : grads) {
    const double s = power_sum(g, norm_type);
    // std::max(NaN, s) keeps the NaN once it is in front, so a NaN gradient is reported as such.
    total = inf_norm ? (std::isnan(s) ? s : std::max(total, s)) : total + s;
  }
  if (!inf_norm && norm_type != 1.0) total = norm_type == 2.0 ? std::sqrt(total) : std::pow(total, 1.0 / norm_type);
  MG_CHECK(!error_if_nonfinite || std::isfinite(total), "clip_grad_norm_: the total norm of order ", norm_type,
           " of the gradients is ", total, "; the gradients cannot be clipped");

  const double coef = max_norm / (total + 1e-6);
  const double clamped = std::isnan(coef) ? coef : std::min(coef, 1.0);
  if (clamped != 1.0) {
    for (Tensor g : grads) g.mul_(clamped);
  }
  return total;
}

double clip_grad_norm_(const TensorDict& params, double max_norm, double norm_type, bool error_if_nonfinite) {
  return clip_grad_norm_(params.values(), max_norm, norm_type, error_if_nonfinite);
}

void clip_grad_value_(const std::vector<Tensor>& params, double clip_value) {
  MG_CHECK(!std::isnan(clip_value) && clip_value >= 0, "clip_grad_value_: clip_value must be >= 0, got ", clip_value);
  NoGradGuard no_grad;
  for (Tensor g : grads_of(params)) g.copy_(clamp(g, -clip_value, clip_value));
}

void clip_grad_value_(const TensorDict& params, double clip_value) { clip_grad_value_(params.values(), clip_value); }

}  // namespace mg::nn
