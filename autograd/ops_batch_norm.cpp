// batch_norm: normalisation with the batch's own statistics as one node. Composed, it saves the
// centred input and the normalised output of every BatchNorm layer (two activation-sized tensors)
// for the backward; this node saves the input and the per-channel mean and 1/std only. With
// x_hat = (x - mean) * rstd over the reduced dims and g_hat = g * scale:
//   dx = rstd * (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat))
//   dscale = sum of g * x_hat to scale's shape,  dshift = sum of g to shift's shape
// A first-order backward uses the saved statistics; a recorded one (create_graph) recomputes
// them from x with differentiable ops, so that its own derivative sees how they depend on x.
#include <algorithm>

#include "grad_mode.h"
#include "ops.h"
#include "record.h"

namespace mg {

NormalizedBatch batch_norm(const Tensor& x, const std::vector<int64_t>& dims, const Tensor& scale, const Tensor& shift,
                           double eps) {
  MG_CHECK(x.defined() && is_floating(x.dtype()), "batch_norm: needs a floating input, got ",
           x.defined() ? describe(x) : std::string("an undefined tensor"));
  MG_CHECK(!dims.empty(), "batch_norm: no dims to normalise over for input ", describe(x));
  for (int64_t d : dims)
    MG_CHECK(d >= 0 && d < x.dim() && std::count(dims.begin(), dims.end(), d) == 1,
             "batch_norm: dims must be distinct "
             "dims of input ",
             describe(x), ", got ", d);
  MG_CHECK(eps >= 0.0, "batch_norm: eps must be >= 0, got ", eps);
  NormalizedBatch result;
  Tensor rstd;
  {
    NoGradGuard internals;  // the node below stands for all of these
    result.mean = mean(x, dims, true);
    const Tensor centered = x - result.mean;
    result.var = mean(centered * centered, dims, true);
    rstd = rsqrt(result.var + eps);
    result.out = centered * rstd;
    if (scale.defined()) result.out = result.out * scale;
    if (shift.defined()) result.out = result.out + shift;
  }
  TensorList inputs{x};
  if (scale.defined()) inputs.push_back(scale);
  if (shift.defined()) inputs.push_back(shift);
  if (!should_record_list(inputs)) return result;

  TensorList saved{x, result.mean, rstd};
  if (scale.defined()) saved.push_back(scale);
  const bool has_scale = scale.defined(), has_shift = shift.defined();
  const Shape scale_shape = has_scale ? scale.shape() : Shape{}, shift_shape = has_shift ? shift.shape() : Shape{};
  record(OpId::batch_norm, inputs, result.out, saved,
         [dims, eps, has_scale, has_shift, scale_shape, shift_shape](const BackwardArgs& a) -> TensorList {
           const Tensor& g = a.grad;
           const Tensor& x = a.saved[0];
           Tensor x_hat, rstd;
           if (GradMode::is_enabled()) {
             const Tensor centered = x - mean(x, dims, true);
             rstd = rsqrt(mean(centered * centered, dims, true) + eps);
             x_hat = centered * rstd;
           } else {
             rstd = a.saved[2];
             x_hat = (x - a.saved[1]) * rstd;
           }
           TensorList grads;
           if (a.needs_input(0)) {
             const Tensor g_hat = has_scale ? g * a.saved[3] : g;
             grads.push_back((g_hat - mean(g_hat, dims, true) - x_hat * mean(g_hat * x_hat, dims, true)) * rstd);
           } else {
             grads.emplace_back();
           }
           std::size_t next = 1;
           if (has_scale) {
             grads.push_back(a.needs_input(next) ? sum_to(g * x_hat, scale_shape) : Tensor());
             ++next;
           }
           if (has_shift) grads.push_back(a.needs_input(next) ? sum_to(g, shift_shape) : Tensor());
           return grads;
         });
  return result;
}

}  // namespace mg
