// softmax and log_softmax: fused forward kernels whose backward formulas are written in
// differentiable ops (so double backward through attention and cross-entropy works). A
// first-order backward (nothing recorded) computes the same formula in one fused kernel; a
// recorded one (create_graph) uses the ops, so that it can be differentiated in turn.
#include "../tensor/kernels.h"
#include "grad_mode.h"
#include "ops.h"
#include "record.h"

namespace mg {

// dx = y * (g - sum(g * y))
Tensor softmax(const Tensor& x, int64_t dim_in) {
  const int dim = wrap_dim("softmax", dim_in, x.dim());
  Tensor y = kernels::softmax(x, dim, /*log=*/false);
  if (should_record(x))
    record(OpId::softmax, {x}, y, {y}, [dim](const BackwardArgs& g) -> TensorList {
      const Tensor& y = g.saved[0];
      if (!GradMode::is_enabled()) return {kernels::softmax_backward(y, g.grad, dim, /*log=*/false)};
      return {y * (g.grad - sum(g.grad * y, {dim}, true))};
    });
  return y;
}

// dx = g - exp(y) * sum(g)
Tensor log_softmax(const Tensor& x, int64_t dim_in) {
  const int dim = wrap_dim("log_softmax", dim_in, x.dim());
  Tensor y = kernels::softmax(x, dim, /*log=*/true);
  if (should_record(x))
    record(OpId::log_softmax, {x}, y, {y}, [dim](const BackwardArgs& g) -> TensorList {
      if (!GradMode::is_enabled()) return {kernels::softmax_backward(g.saved[0], g.grad, dim, /*log=*/true)};
      return {g.grad - exp(g.saved[0]) * sum(g.grad, {dim}, true)};
    });
  return y;
}

}  // namespace mg
