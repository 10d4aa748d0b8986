// Reductions. The adjoint of a reduction is a broadcast: the gradient is reshaped to the
// keepdim shape and expanded back over the reduced dims.
#include <cmath>
#include <limits>

#include "../tensor/kernels.h"
#include "ops.h"
#include "record.h"

namespace mg {
namespace {

// g has the reduced shape (with or without kept dims); returns it broadcast to input_shape.
Tensor unreduce(const Tensor& g, const Shape& input_shape, const std::vector<int>& dims, bool keepdim) {
  Tensor kept = keepdim ? g : reshape(g, reduced_shape(input_shape, dims, true));
  return expand(kept, input_shape);
}

int64_t reduced_count(const Shape& shape, const std::vector<int>& dims) {
  int64_t n = 1;
  for (int d : dims) n *= shape[d];
  return n;
}

Tensor extremum(OpId id, ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  const std::string_view name = op_name(id);
  const std::vector<int> dims = wrap_dims(name, dims_in, x.dim());
  Tensor y = kernels::reduce(op, x, dims_in, keepdim);
  if (should_record(x))
    record(id, {x}, y, {x, y}, [dims, keepdim, shape = x.shape()](const BackwardArgs& g) -> TensorList {
      // Every element equal to the extremum gets an equal share.
      Tensor y_kept = kernels::as_strided(g.saved[1], reduced_shape(shape, dims, true),
                                          contiguous_strides(reduced_shape(shape, dims, true)), g.saved[1].offset());
      Tensor hit = kernels::binary(BinaryOp::Eq, g.saved[0], kernels::contiguous(y_kept));
      std::vector<int64_t> dims64(dims.begin(), dims.end());
      Tensor count = kernels::reduce(ReduceOp::Sum, hit, dims64, true);
      Tensor share = kernels::binary(BinaryOp::Div, hit, count);
      return {unreduce(g.grad, shape, dims, keepdim) * share};
    });
  return y;
}

std::pair<Tensor, Tensor> extremum_along(OpId id, ReduceOp op, const Tensor& x, int64_t dim_in, bool keepdim) {
  const int dim = wrap_dim(op_name(id), dim_in, x.dim());
  auto [values, indices] = kernels::arg_reduce(op, x, dim, keepdim);
  if (should_record(x))
    record(id, {x}, values, {indices},
           [dim, keepdim, shape = x.shape(), dtype = x.dtype(), device = x.device()](const BackwardArgs& g) -> TensorList {
             Tensor index = keepdim || g.saved[0].dim() == static_cast<int64_t>(shape.size())
                                ? g.saved[0]
                                : kernels::as_strided(g.saved[0], reduced_shape(shape, {dim}, true),
                                                      contiguous_strides(reduced_shape(shape, {dim}, true)),
                                                      g.saved[0].offset());
             Tensor grad = keepdim || g.grad.dim() == static_cast<int64_t>(shape.size()) ? g.grad : unsqueeze(g.grad, dim);
             return {scatter_add(zeros(shape, dtype, device), dim, kernels::contiguous(index), grad)};
           });
  return {values, indices};
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  const std::vector<int> dims = wrap_dims("sum", dims_in, x.dim());
  Tensor y = kernels::reduce(ReduceOp::Sum, x, dims_in, keepdim);
  if (should_record(x))
    record(OpId::sum, {x}, y, {}, [dims, keepdim, shape = x.shape()](const BackwardArgs& g) -> TensorList {
      return {unreduce(g.grad, shape, dims, keepdim)};
    });
  return y;
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  MG_CHECK(is_floating(x.dtype()), "mean: needs a floating tensor, got ", describe(x));
  const std::vector<int> dims = wrap_dims("mean", dims_in, x.dim());
  const int64_t n = reduced_count(x.shape(), dims);
  Tensor total = kernels::reduce(ReduceOp::Sum, x, dims_in, keepdim);
  Tensor y = kernels::binary(BinaryOp::Div, total, kernels::scalar_like(static_cast<double>(n), total));
  if (should_record(x))
    record(OpId::mean, {x}, y, {}, [dims, keepdim, n, shape = x.shape()](const BackwardArgs& g) -> TensorList {
      return {unreduce(g.grad, shape, dims, keepdim) / static_cast<double>(n)};
    });
  return y;
}

Tensor amax(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return extremum(OpId::amax, ReduceOp::Max, x, dims, keepdim);
}

Tensor amin(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return extremum(OpId::amin, ReduceOp::Min, x, dims, keepdim);
}

std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim) {
  return extremum_along(OpId::max_dim, ReduceOp::Max, x, dim, keepdim);
}

std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim) {
  return extremum_along(OpId::min_dim, ReduceOp::Min, x, dim, keepdim);
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) { return kernels::arg_reduce(ReduceOp::Max, x, dim, keepdim).second; }
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) { return kernels::arg_reduce(ReduceOp::Min, x, dim, keepdim).second; }

// log sum exp(x) = m + log sum exp(x - m) with m = max(x) held constant: the identity holds
// for any m, so its gradient is exact, and the shift keeps exp from overflowing.
Tensor logsumexp(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  MG_CHECK(is_floating(x.dtype()), "logsumexp: needs a floating tensor, got ", describe(x));
  MG_CHECK(x.numel() > 0, "logsumexp: empty tensor ", describe(x));
  const std::vector<int> wrapped = wrap_dims("logsumexp", dims, x.dim());  // bad dims are named as logsumexp's
  Tensor m = kernels::reduce(ReduceOp::Max, x.detach(), dims, true);
  // An all -inf slice would give inf - inf; shift by 0 there instead.
  Tensor finite = kernels::binary(BinaryOp::Lt, kernels::unary(UnaryOp::Abs, m),
                                  kernels::scalar_like(std::numeric_limits<double>::infinity(), m));
  Tensor shift = kernels::where(finite, m, kernels::scalar_like(0.0, m));
  Tensor y = log(sum(exp(x - shift), dims, true)) + shift;
  if (keepdim) return y;
  return reshape(y, reduced_shape(x.shape(), wrapped, false));
}

Tensor var(const Tensor& x, const std::vector<int64_t>& dims, int64_t correction, bool keepdim) {
  MG_CHECK(is_floating(x.dtype()), "var: needs a floating tensor, got ", describe(x));
  MG_CHECK(correction >= 0, "var: correction must be >= 0, got ", correction);
  const int64_t n = reduced_count(x.shape(), wrap_dims("var", dims, x.dim()));
  Tensor centered = x - mean(x, dims, true);
  const double denominator = static_cast<double>(std::max<int64_t>(n - correction, 0));
  return sum(centered * centered, dims, keepdim) / denominator;
}

}  // namespace mg
