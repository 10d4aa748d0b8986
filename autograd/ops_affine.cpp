// affine: y = x W^T + b as one node, the map of a linear layer. Composed, a layer's forward
// records a transpose, a matmul, a bias add and the reshapes around them; in a meta-step of a
// small model those nodes (recorded again by every inner step's create_graph backward) cost more
// than the arithmetic. With X = x as rows [M, in] (per task [T, M, in]) and G = dy likewise:
//   dx = G W,  dW = G^T X,  db = sum of G over the rows
// written in differentiable ops, so gradients of any order go through it.
#include "../tensor/kernels.h"
#include "grad_mode.h"
#include "ops.h"
#include "record.h"

namespace mg {
namespace {

void check_affine(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  MG_CHECK(x.defined() && weight.defined(), "affine: input and weight must be defined");
  MG_CHECK(weight.dim() == 2 || weight.dim() == 3,
           "affine: weight must be [out_features, in_features] (or [T, out, in] per task), got ", describe(weight));
  MG_CHECK(is_floating(x.dtype()) && x.dtype() == weight.dtype() && x.device() == weight.device(), "affine: input ",
           describe(x), " and weight ", describe(weight), " must be floating, of one dtype and device");
  const bool per_task = weight.dim() == 3;
  const int64_t in = weight.size(-1), out = weight.size(-2);
  MG_CHECK(x.dim() >= (per_task ? 2 : 1) && x.size(-1) == in, "affine: input ", describe(x), " does not match weight ",
           describe(weight), " (last dim must be ", in, per_task ? ", after a leading task dim)" : ")");
  MG_CHECK(!per_task || x.size(0) == weight.size(0), "affine: input ", describe(x), " holds ", x.size(0),
           " tasks but the per-task weight ", describe(weight), " has ", weight.size(0));
  if (!bias.defined()) return;
  const Shape expected = per_task ? Shape{weight.size(0), out} : Shape{out};
  MG_CHECK(bias.shape() == expected && bias.dtype() == x.dtype() && bias.device() == x.device(), "affine: bias ",
           describe(bias), " does not match weight ", describe(weight), " (expected ", shape_str(expected), ")");
}

// x as the rows the product reads: [M, in], or [T, M, in] per task.
Shape rows_shape(const Tensor& x, bool per_task) {
  return per_task ? Shape{x.size(0), -1, x.size(-1)} : Shape{-1, x.size(-1)};
}

}  // namespace

Tensor affine(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_affine(x, weight, bias);
  const bool per_task = weight.dim() == 3;
  Shape out_shape = x.shape();
  out_shape.back() = weight.size(-2);
  Tensor y;
  {
    NoGradGuard internals;  // the node below stands for all of these
    Tensor rows = kernels::matmul(reshape(x, rows_shape(x, per_task)), transpose(weight, -1, -2));
    if (bias.defined()) rows = kernels::binary(BinaryOp::Add, rows, per_task ? unsqueeze(bias, 1) : bias);
    y = reshape(rows, out_shape);
  }
  const TensorList inputs = defined_only({x, weight, bias});
  if (!should_record_list(inputs)) return y;
  record(OpId::affine, inputs, y, {x, weight},
         [per_task, has_bias = bias.defined()](const BackwardArgs& a) -> TensorList {
           const Tensor& x = a.saved[0];
           const Tensor& weight = a.saved[1];
           const int64_t out = weight.size(-2);
           const Tensor g = reshape(a.grad, per_task ? Shape{x.size(0), -1, out} : Shape{-1, out});
           TensorList grads(has_bias ? 3 : 2);
           if (a.needs_input(0)) grads[0] = reshape(matmul(g, weight), x.shape());
           if (a.needs_input(1)) grads[1] = matmul(transpose(g, -1, -2), reshape(x, rows_shape(x, per_task)));
           if (has_bias && a.needs_input(2)) grads[2] = sum(g, {per_task ? 1 : 0});
           return grads;
         });
  return y;
}

}  // namespace mg
