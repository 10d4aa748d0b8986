// softmax and log_softmax: fused forward kernels whose backward formulas are written in
// differentiable ops (so double backward through attention and cross-entropy works). The
// backward's values come from one fused kernel; when it is recorded (create_graph), their
// derivatives come from the ops (fused_backward.h).
#include "../tensor/kernels.h"
#include "fused_backward.h"
#include "ops.h"
#include "record.h"

namespace mg {

// dx = y * (g - sum(g * y))
Tensor softmax(const Tensor& x, int64_t dim_in) {
  const int dim = wrap_dim("softmax", dim_in, x.dim());
  Tensor y = kernels::softmax(x, dim, /*log=*/false);
  if (should_record(x))
    record(OpId::softmax, {x}, y, {y}, [dim](const BackwardArgs& a) -> TensorList {
      return fused_backward(
          "softmax backward", {a.saved[0], a.grad},
          [dim](const TensorList& in) -> TensorList { return {kernels::softmax_backward(in[0], in[1], dim, false)}; },
          [dim](const TensorList& in) -> TensorList { return {in[0] * (in[1] - sum(in[1] * in[0], {dim}, true))}; });
    });
  return y;
}

// dx = g - exp(y) * sum(g)
Tensor log_softmax(const Tensor& x, int64_t dim_in) {
  const int dim = wrap_dim("log_softmax", dim_in, x.dim());
  Tensor y = kernels::softmax(x, dim, /*log=*/true);
  if (should_record(x))
    record(OpId::log_softmax, {x}, y, {y}, [dim](const BackwardArgs& a) -> TensorList {
      return fused_backward(
          "log_softmax backward", {a.saved[0], a.grad},
          [dim](const TensorList& in) -> TensorList { return {kernels::softmax_backward(in[0], in[1], dim, true)}; },
          [dim](const TensorList& in) -> TensorList { return {in[1] - exp(in[0]) * sum(in[1], {dim}, true)}; });
    });
  return y;
}

}  // namespace mg
