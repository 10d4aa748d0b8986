// layer_norm: a fused forward kernel (one pass structure per row) whose backward formula is
// written in differentiable ops. With x_hat = (x - mean) * rstd over the normalised dims:
//   dx = rstd * (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat)),  g_hat = g * weight
//   dweight = sum over the leading dims of g * x_hat,  dbias = sum over the leading dims of g
// A first-order backward takes mean and rstd from the forward kernel. A recorded backward
// (create_graph) recomputes them from x with differentiable ops, so that its own derivative sees
// how they depend on x: the kernel's statistics are constants of the tape.
#include "../tensor/kernels.h"
#include "grad_mode.h"
#include "ops.h"
#include "record.h"

namespace mg {

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  MG_CHECK(x.defined(), "layer_norm: input is an undefined tensor");
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  MG_CHECK(k >= 1 && x.dim() >= k && Shape(x.shape().end() - k, x.shape().end()) == normalized_shape,
           "layer_norm: input of shape ", shape_str(x.shape()), " does not end in normalized_shape ",
           shape_str(normalized_shape));
  kernels::LayerNormResult r = kernels::layer_norm(x, k, weight, bias, eps);
  const TensorList inputs = defined_only({x, weight, bias});
  if (!should_record_list(inputs)) return r.out;

  const TensorList saved = defined_only({x, r.mean, r.rstd, weight});
  std::vector<int64_t> dims;
  for (int64_t d = x.dim() - k; d < x.dim(); ++d) dims.push_back(d);
  const bool has_weight = weight.defined(), has_bias = bias.defined();
  record(OpId::layer_norm, inputs, r.out, saved,
         [dims, eps, has_weight, has_bias, normalized_shape](const BackwardArgs& a) -> TensorList {
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
             const Tensor g_hat = has_weight ? g * a.saved[3] : g;
             grads.push_back((g_hat - mean(g_hat, dims, true) - x_hat * mean(g_hat * x_hat, dims, true)) * rstd);
           } else {
             grads.emplace_back();
           }
           std::size_t next = 1;
           if (has_weight) {
             grads.push_back(a.needs_input(next) ? sum_to(g * x_hat, normalized_shape) : Tensor());
             ++next;
           }
           if (has_bias) grads.push_back(a.needs_input(next) ? sum_to(g, normalized_shape) : Tensor());
           return grads;
         });
  return r.out;
}

}  // namespace mg
