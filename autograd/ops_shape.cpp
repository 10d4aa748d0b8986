// Joining tensors: concat's adjoint slices the gradient back into pieces.
#include "../tensor/kernels.h"
#include "ops.h"
#include "record.h"

namespace mg {

Tensor concat(const std::vector<Tensor>& tensors, int64_t dim_in) {
  Tensor y = kernels::concat(tensors, dim_in);
  if (should_record_list(tensors)) {
    const int dim = wrap_dim("concat", dim_in, tensors[0].dim());
    std::vector<int64_t> sizes;
    for (const Tensor& t : tensors) sizes.push_back(t.size(dim));
    record(OpId::concat, tensors, y, {}, [dim, sizes](const BackwardArgs& g) -> TensorList {
      TensorList grads(sizes.size());
      int64_t start = 0;
      for (std::size_t i = 0; i < sizes.size(); ++i) {
        if (g.needs_input(i)) grads[i] = narrow(g.grad, dim, start, sizes[i]);
        start += sizes[i];
      }
      return grads;
    });
  }
  return y;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  MG_CHECK(!tensors.empty(), "stack: expects at least one tensor");
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    kernels::check_defined("stack", tensors[i]);
    MG_CHECK(tensors[i].shape() == tensors[0].shape(), "stack: tensor ", i, " has shape ",
             shape_str(tensors[i].shape()), " but tensor 0 has shape ", shape_str(tensors[0].shape()));
  }
  const int d = wrap_dim("stack", dim, tensors[0].dim() + 1);
  std::vector<Tensor> expanded;
  expanded.reserve(tensors.size());
  for (const Tensor& t : tensors) expanded.push_back(unsqueeze(t, d));
  return concat(expanded, d);
}

}  // namespace mg
