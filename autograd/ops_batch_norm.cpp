// batch_norm: fused forward and backward kernels; the derivatives of the backward (create_graph)
// come from its formula in differentiable ops (fused_backward.h). With x_hat = (x - mean) * rstd
// over (N, H, W) of each channel:
//   dx = rstd * (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat)),  g_hat = g * weight
//   dweight = sum of g * x_hat,  dbias = sum of g  (per channel)
// The formula recomputes mean and rstd from x with differentiable ops, so that its derivative
// sees how they depend on x: the kernel's statistics are constants of the tape.
#include "../tensor/kernels.h"
#include "fused_backward.h"
#include "normalization_backward.h"
#include "ops.h"
#include "record.h"

namespace mg {
namespace {

// [C] -> [C,1,1] against [N,C,H,W]; [T,C] -> [T,1,C,1,1] against [T,N,C,H,W].
Tensor per_channel(const Tensor& t) {
  if (t.dim() == 1) return reshape(t, {t.size(0), 1, 1});
  return reshape(t, {t.size(0), 1, t.size(1), 1, 1});
}

struct BackwardPlan {
  std::vector<int64_t> dims;
  double eps;
  bool has_weight;
  NormalizationNeeds need;
};

// The gradients of the inputs that need one, in input order (x, weight, bias), from
// in = (x, grad, mean, rstd[, weight]): by the fused kernel, or by the formula in ops.
TensorList kernel_grads(const TensorList& in, const BackwardPlan& p) {
  kernels::BatchNormGrads g = kernels::batch_norm_backward(in[0], in[1], in[2], in[3], p.has_weight ? in[4] : Tensor(),
                                                           p.need.x, p.need.weight, p.need.bias);
  TensorList out;
  for (const Tensor* t : {&g.x, &g.weight, &g.bias})
    if (t->defined()) out.push_back(*t);
  return out;
}

TensorList formula_grads(const TensorList& in, const BackwardPlan& p) {
  const Tensor &x = in[0], &g = in[1];
  const Tensor centered = x - mean(x, p.dims, true);
  const Tensor rstd = rsqrt(mean(centered * centered, p.dims, true) + p.eps);
  const Tensor x_hat = centered * rstd;
  TensorList out;
  if (p.need.x) {
    const Tensor g_hat = p.has_weight ? g * per_channel(in[4]) : g;
    out.push_back((g_hat - mean(g_hat, p.dims, true) - x_hat * mean(g_hat * x_hat, p.dims, true)) * rstd);
  }
  if (p.need.weight) out.push_back(reshape(sum(g * x_hat, p.dims), in[2].shape()));
  if (p.need.bias) out.push_back(reshape(sum(g, p.dims), in[2].shape()));
  return out;
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, BatchNormStats* stats) {
  kernels::BatchNormResult r = kernels::batch_norm(x, weight, bias, eps);
  if (stats != nullptr) *stats = {r.mean, r.var};
  const TensorList inputs = defined_only({x, weight, bias});
  if (!should_record_list(inputs)) return r.out;

  const TensorList saved = defined_only({x, r.mean, r.rstd, weight});
  const std::vector<int64_t> dims = x.dim() == 5 ? std::vector<int64_t>{1, 3, 4} : std::vector<int64_t>{0, 2, 3};
  const bool has_weight = weight.defined(), has_bias = bias.defined();
  record(OpId::batch_norm, inputs, r.out, saved,
         [dims, eps, has_weight, has_bias](const BackwardArgs& a) -> TensorList {
           const BackwardPlan plan{dims, eps, has_weight, normalization_needs(a, has_weight, has_bias)};
           const TensorList in = normalization_backward_inputs(a, has_weight);
           return to_needed_inputs(
               a, fused_backward(
                      "batch_norm backward", in, [plan](const TensorList& args) { return kernel_grads(args, plan); },
                      [plan](const TensorList& args) { return formula_grads(args, plan); }));
         });
  return r.out;
}

}  // namespace mg
