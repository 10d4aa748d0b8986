// Indexing ops come in adjoint pairs: index_select <-> index_add, gather <-> scatter_add.
// Each one's backward is its partner, so derivatives of any order stay inside the pair.
#include "../tensor/kernels.h"
#include "ops.h"
#include "record.h"

namespace mg {

Tensor index_select(const Tensor& x, int64_t dim_in, const Tensor& index) {
  Tensor y = kernels::index_select(x, dim_in, index);
  if (should_record(x)) {
    const int dim = wrap_dim("index_select", dim_in, x.dim());
    record(OpId::index_select, {x}, y, {index},
           [dim, shape = x.shape(), dtype = x.dtype(), device = x.device()](const BackwardArgs& g) -> TensorList {
             return {index_add(zeros(shape, dtype, device), dim, g.saved[0], g.grad)};
           });
  }
  return y;
}

Tensor index_add(const Tensor& x, int64_t dim_in, const Tensor& index, const Tensor& src) {
  Tensor y = kernels::index_add(x, dim_in, index, src);
  if (should_record(x, src)) {
    const int dim = wrap_dim("index_add", dim_in, x.dim());
    record(OpId::index_add, {x, src}, y, {index}, [dim](const BackwardArgs& g) -> TensorList {
      return {g.needs_input(0) ? g.grad : Tensor(),
              g.needs_input(1) ? index_select(g.grad, dim, g.saved[0]) : Tensor()};
    });
  }
  return y;
}

Tensor gather(const Tensor& x, int64_t dim_in, const Tensor& index) {
  Tensor y = kernels::gather(x, dim_in, index);
  if (should_record(x)) {
    const int dim = wrap_dim("gather", dim_in, x.dim());
    record(OpId::gather, {x}, y, {index},
           [dim, shape = x.shape(), dtype = x.dtype(), device = x.device()](const BackwardArgs& g) -> TensorList {
             return {scatter_add(zeros(shape, dtype, device), dim, g.saved[0], g.grad)};
           });
  }
  return y;
}

namespace {
// Zero-pads g at the end of each dim up to shape (a concat, so it stays differentiable).
Tensor pad_to(Tensor g, const Shape& shape) {
  for (int64_t d = 0; d < g.dim(); ++d) {
    if (g.size(d) == shape[d]) continue;
    Shape pad = g.shape();
    pad[d] = shape[d] - g.size(d);
    g = concat({g, zeros(pad, g.dtype(), g.device())}, d);
  }
  return g;
}
}  // namespace

Tensor scatter_add(const Tensor& x, int64_t dim_in, const Tensor& index, const Tensor& src) {
  Tensor y = kernels::scatter_add(x, dim_in, index, src);
  if (should_record(x, src)) {
    const int dim = wrap_dim("scatter_add", dim_in, x.dim());
    // src may be larger than index in any dim: its elements beyond index's extent are not
    // scattered and get a zero gradient.
    record(OpId::scatter_add, {x, src}, y, {index},
           [dim, src_shape = src.shape()](const BackwardArgs& g) -> TensorList {
             return {g.needs_input(0) ? g.grad : Tensor(),
                     g.needs_input(1) ? pad_to(gather(g.grad, dim, g.saved[0]), src_shape) : Tensor()};
           });
  }
  return y;
}

Tensor embedding(const Tensor& weight, const Tensor& indices) {
  kernels::check_defined("embedding", weight, "weight");
  kernels::check_defined("embedding", indices, "indices");
  MG_CHECK(weight.dim() == 2, "embedding: weight must be 2-D [num_embeddings, dim], got ", describe(weight));
  MG_CHECK(indices.dtype() == kInt64, "embedding: indices must be int64, got ", describe(indices));
  const std::optional<kernels::IndexOutside> bad = kernels::first_index_outside(indices, weight.size(0));
  MG_CHECK(!bad, "embedding: index ", bad->value, " is out of range for ", weight.size(0), " embeddings (weight ",
           describe(weight), ")");
  Shape out_shape = indices.shape();
  out_shape.push_back(weight.size(1));
  return reshape(index_select(weight, 0, reshape(indices, {-1})), out_shape);
}

}  // namespace mg
