#include "flatten.h"

#include "../autograd/ops.h"

namespace mg::nn {

Tensor Flatten::forward(const Params&, const Tensor& x) {
  if (x.dim() == 0) return reshape(x, {1});
  const int64_t start = wrap_dim("Flatten", start_dim_, x.dim());
  const int64_t end = wrap_dim("Flatten", end_dim_, x.dim());
  MG_CHECK(start <= end, "Flatten: start_dim ", start_dim_, " comes after end_dim ", end_dim_, " for ", describe(x));
  Shape shape(x.shape().begin(), x.shape().begin() + start);
  int64_t merged = 1;
  for (int64_t d = start; d <= end; ++d) merged *= x.size(d);
  shape.push_back(merged);
  shape.insert(shape.end(), x.shape().begin() + end + 1, x.shape().end());
  return reshape(x, shape);
}

}  // namespace mg::nn
