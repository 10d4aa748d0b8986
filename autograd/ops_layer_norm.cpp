// layer_norm: a fused forward kernel (one pass structure per row) whose backward formula is
// written in differentiable ops. With x_hat = (x - mean) * rstd over the normalised dims:
//   dx = rstd * (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat)),  g_hat = g * weight
//   dweight = sum over the leading dims of g * x_hat,  dbias = sum over the leading dims of g
// The gradient's values take mean and rstd from the forward kernel. Their derivatives
// (create_graph, fused_backward.h) come from the formula with mean and rstd recomputed from x in
// differentiable ops, so that it sees how they depend on x: the kernel's statistics are constants
// of the tape.
#include "../tensor/kernels.h"
#include "fused_backward.h"
#include "normalization_backward.h"
#include "ops.h"
#include "record.h"

namespace mg {
namespace {

struct BackwardPlan {
  std::vector<int64_t> dims;
  Shape normalized_shape;
  double eps;
  bool has_weight;
  NormalizationNeeds need;
};

// The gradients of the inputs that need one, in input order (x, weight, bias), from
// in = (x, grad, mean, rstd[, weight]) and x_hat, rstd.
TensorList grads_from(const TensorList& in, const Tensor& x_hat, const Tensor& rstd, const BackwardPlan& p) {
  const Tensor& g = in[1];
  TensorList out;
  if (p.need.x) {
    const Tensor g_hat = p.has_weight ? g * in[4] : g;
    out.push_back((g_hat - mean(g_hat, p.dims, true) - x_hat * mean(g_hat * x_hat, p.dims, true)) * rstd);
  }
  if (p.need.weight) out.push_back(sum_to(g * x_hat, p.normalized_shape));
  if (p.need.bias) out.push_back(sum_to(g, p.normalized_shape));
  return out;
}

TensorList kernel_grads(const TensorList& in, const BackwardPlan& p) {
  const Tensor& rstd = in[3];
  return grads_from(in, (in[0] - in[2]) * rstd, rstd, p);
}

TensorList formula_grads(const TensorList& in, const BackwardPlan& p) {
  const Tensor& x = in[0];
  const Tensor centered = x - mean(x, p.dims, true);
  const Tensor rstd = rsqrt(mean(centered * centered, p.dims, true) + p.eps);
  return grads_from(in, centered * rstd, rstd, p);
}

}  // namespace

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
  record(
      OpId::layer_norm, inputs, r.out, saved,
      [dims, eps, has_weight, has_bias, normalized_shape](const BackwardArgs& a) -> TensorList {
        const BackwardPlan plan{dims, normalized_shape, eps, has_weight, normalization_needs(a, has_weight, has_bias)};
        const TensorList in = normalization_backward_inputs(a, has_weight);
        return to_needed_inputs(
            a, fused_backward(
                   "layer_norm backward", in, [plan](const TensorList& args) { return kernel_grads(args, plan); },
                   [plan](const TensorList& args) { return formula_grads(args, plan); }));
      });
  return r.out;
}

}  // namespace mg
