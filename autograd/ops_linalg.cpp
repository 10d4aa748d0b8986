// matmul, with NumPy's promotion of 1-D operands and broadcasting of batch dims.
#include "../tensor/kernels.h"
#include "ops.h"
#include "record.h"

namespace mg {

// With A promoted to [..., M, K] and B to [..., K, N]: dA = dC B^T and dB = A^T dC, each summed
// over the batch dims it was broadcast along, then returned to the operand's own shape.
Tensor matmul(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::matmul(a, b);
  if (should_record(a, b))
    record(OpId::matmul, {a, b}, out, {a, b}, [](const BackwardArgs& g) -> TensorList {
      const Tensor& a = g.saved[0];
      const Tensor& b = g.saved[1];
      Tensor a2 = a.dim() == 1 ? unsqueeze(a, 0) : a;
      Tensor b2 = b.dim() == 1 ? unsqueeze(b, 1) : b;
      Tensor grad = g.grad;
      if (a.dim() == 1) grad = unsqueeze(grad, grad.dim() - (b.dim() == 1 ? 0 : 1));
      if (b.dim() == 1) grad = unsqueeze(grad, grad.dim());
      // A batched grad that arrives as a view (attention's heads, from the merge's transpose) is
      // copied once here, not by each of the two products.
      if (g.needs_input(0) && g.needs_input(1) && grad.dim() >= 4 && !grad.is_contiguous()) grad = contiguous(grad);
      Tensor ga, gb;
      if (g.needs_input(0)) ga = reshape(sum_to(matmul(grad, transpose(b2, -1, -2)), a2.shape()), a.shape());
      if (g.needs_input(1)) gb = reshape(sum_to(matmul(transpose(a2, -1, -2), grad), b2.shape()), b.shape());
      return {ga, gb};
    });
  return out;
}

}  // namespace mg
