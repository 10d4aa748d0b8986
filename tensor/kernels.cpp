#include "kernels.h"

#include <algorithm>
#include <string>

#include "device_graph.h"
#include "geometry.h"

namespace mg::kernels {
namespace {

Backend& backend(const Tensor& t) { return backend_for(t.device()); }

// A contiguous view with a new shape of a tensor that is itself contiguous (no checks beyond
// bounds; the element count must match).
Tensor reshape_contiguous(const Tensor& t, const Shape& shape) {
  return Tensor::make_view(t, shape, contiguous_strides(shape), t.offset());
}

// Treats a 0-d tensor as a 1-element 1-d one (kernels that work along a dim want one).
Tensor at_least_1d(const Tensor& t) {
  if (t.dim() > 0) return t;
  return Tensor::make_view(t, Shape{1}, Strides{1}, t.offset());
}

void check_index_tensor(std::string_view op, const Tensor& index, const Tensor& x) {
  check_defined(op, index, "index");
  MG_CHECK(index.dtype() == kInt64, op, ": index must be int64, got ", index.dtype());
  MG_CHECK(index.device() == x.device(), op, ": index is on ", index.device(), " but input is on ", x.device());
}

// Throws unless every value of index lies in [0, size) (as far as first_index_outside can see).
void check_index_range(std::string_view op, const Tensor& index, int64_t size, int64_t dim) {
  const std::optional<IndexOutside> bad = first_index_outside(index, size);
  MG_CHECK(!bad, op, ": index ", bad->value, " is out of range for dim ", dim, " of size ", size);
}

std::string dims_str(const std::vector<int>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? "," : "") + std::to_string(dims[i]);
  return s + "]";
}

}  // namespace

void check_same_dtype(std::string_view op, const Tensor& a, const Tensor& b) {
  MG_CHECK(a.dtype() == b.dtype(), op, ": dtypes ", a.dtype(), " and ", b.dtype(), " do not match");
}

void check_same_device(std::string_view op, const Tensor& a, const Tensor& b) {
  MG_CHECK(a.device() == b.device(), op, ": tensors on ", a.device(), " and ", b.device());
}

std::optional<IndexOutside> first_index_outside(const Tensor& index, int64_t size) {
  // Not while a graph is captured on the index's device, when nothing can be read on the host:
  // the CUDA kernels then select NaN (0 for int64) for an index out of range and accumulate
  // nothing for it.
  if (index.numel() == 0 || capturing_graph(index.device())) return std::nullopt;
  const Tensor host = contiguous(to_device(index, kCPU));
  const int64_t* v = host.data_ptr<int64_t>();
  for (int64_t i = 0, n = host.numel(); i < n; ++i)
    if (v[i] < 0 || v[i] >= size) return IndexOutside{v[i], i};
  return std::nullopt;
}

void check_defined(std::string_view op, const Tensor& t, std::string_view what) {
  MG_CHECK(t.defined(), op, ": ", what, " is an undefined tensor");
}

Tensor expand_to(std::string_view op, const Tensor& x, const Shape& shape) {
  check_defined(op, x);
  if (x.shape() == shape) return x;
  const Shape& from = x.shape();
  const size_t nd = shape.size();
  MG_CHECK(from.size() <= nd, op, ": cannot expand ", shape_str(from), " to ", shape_str(shape));
  Strides strides(nd, 0);
  const size_t lead = nd - from.size();
  for (size_t i = 0; i < nd; ++i) {
    MG_CHECK(shape[i] >= 0, op, ": cannot expand to ", shape_str(shape), " (negative size)");
    if (i < lead) continue;
    const int64_t s = from[i - lead];
    MG_CHECK(s == shape[i] || s == 1, op, ": cannot expand ", shape_str(from), " to ", shape_str(shape), " (", s,
             " vs ", shape[i], " at dim ", i, ")");
    strides[i] = s == shape[i] ? x.strides()[i - lead] : 0;
  }
  return Tensor::make_view(x, shape, std::move(strides), x.offset());
}

Tensor as_strided(const Tensor& x, const Shape& shape, const Strides& strides, int64_t offset) {
  check_defined("as_strided", x);
  detail::check_view_bounds("as_strided", *x.storage(), x.dtype(), shape, strides, offset);
  return Tensor::make_view(x, shape, strides, offset);
}

Tensor contiguous(const Tensor& x) {
  check_defined("contiguous", x);
  return x.is_contiguous() ? x : clone(x);
}

Tensor clone(const Tensor& x) {
  check_defined("clone", x);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.numel() > 0) backend(out).copy(x, out);
  return out;
}

Tensor cast(const Tensor& x, DType dtype) {
  check_defined("cast", x);
  if (x.dtype() == dtype) return x;
  Tensor out = Tensor::empty(x.shape(), dtype, x.device());
  if (x.numel() > 0) backend(out).copy(x, out);
  return out;
}

// A copy between devices runs on the backend of the device that is not the CPU (it is the one
// that knows how to reach the other side); a copy within one device on that device's backend.
static Backend& copy_backend(const Tensor& src, const Tensor& dst) {
  return backend_for(dst.device().is_cpu() ? src.device() : dst.device());
}

Tensor to_device(const Tensor& x, Device device) {
  check_defined("to", x);
  if (x.device() == device) return x;
  Tensor out = Tensor::empty(x.shape(), x.dtype(), device);
  if (x.numel() > 0) copy_backend(x, out).copy(x, out);
  return out;
}

void copy_(const Tensor& dst, const Tensor& src) {
  check_defined("copy_", dst, "destination");
  check_defined("copy_", src, "source");
  if (dst.numel() == 0) {
    expand_to("copy_", src, dst.shape());  // still validate the shapes
    return;
  }
  Tensor from = expand_to("copy_", src, dst.shape());
  if (from.storage() == dst.storage()) {
    if (from.offset() == dst.offset() && from.strides() == dst.strides() && from.dtype() == dst.dtype()) return;
    from = clone(from);  // may overlap dst: read everything before writing
  }
  copy_backend(from, dst).copy(from, dst);
}

void fill_(const Tensor& dst, double value) {
  check_defined("fill_", dst);
  if (dst.numel() > 0) backend(dst).fill(dst, value);
}

Tensor scalar_like(double value, const Tensor& like) {
  check_defined("scalar_like", like);
  Tensor out = Tensor::empty({}, like.dtype(), like.device());
  backend(out).fill(out, value);
  return out;
}

Tensor unary(UnaryOp op, const Tensor& x) {
  const char* name = unary_op_name(op);
  check_defined(name, x);
  const bool int_ok = op == UnaryOp::Neg || op == UnaryOp::Abs || op == UnaryOp::Sign || op == UnaryOp::Square;
  MG_CHECK(is_floating(x.dtype()) || int_ok, name, ": dtype ", x.dtype(),
           " is not supported (needs float32 or float64); input ", describe(x));
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0) backend(out).unary(op, x, out);
  return out;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_op_name(op);
  check_defined(name, a, "first input");
  check_defined(name, b, "second input");
  check_same_dtype(name, a, b);
  check_same_device(name, a, b);
  MG_CHECK(is_floating(a.dtype()) || (op != BinaryOp::Div && op != BinaryOp::Pow), name, ": dtype ", a.dtype(),
           " is not supported (needs float32 or float64; cast integers first)");
  const Shape shape = broadcast_shapes(name, a.shape(), b.shape());
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  if (out.numel() > 0) backend(out).binary(op, expand_to(name, a, shape), expand_to(name, b, shape), out);
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_defined("where", cond, "condition");
  check_defined("where", a, "first input");
  check_defined("where", b, "second input");
  check_same_dtype("where", a, b);
  check_same_device("where", a, b);
  check_same_device("where", cond, a);
  const Shape shape = broadcast_shapes("where", broadcast_shapes("where", cond.shape(), a.shape()), b.shape());
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  if (out.numel() > 0)
    backend(out).where(expand_to("where", cond, shape), expand_to("where", a, shape), expand_to("where", b, shape),
                       out);
  return out;
}

Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const char* name = reduce_op_name(op);
  check_defined(name, x);
  MG_CHECK(op == ReduceOp::Sum || op == ReduceOp::Max || op == ReduceOp::Min, name, ": not a reduction");
  const std::vector<int> rdims = wrap_dims(name, dims, x.dim());
  const Shape kept = reduced_shape(x.shape(), rdims, true);
  Tensor out = Tensor::empty(kept, x.dtype(), x.device());
  if (out.numel() > 0) {
    int64_t count = 1;
    for (int d : rdims) count *= x.shape()[d];
    if (count == 0) {
      MG_CHECK(op == ReduceOp::Sum, name, ": cannot reduce over an empty dimension (input ", describe(x), ", dims ",
               dims_str(rdims), ")");
      backend(out).fill(out, 0.0);
    } else {
      backend(out).reduce(op, x, rdims, out);
    }
  }
  if (keepdim) return out;
  return reshape_contiguous(out, reduced_shape(x.shape(), rdims, false));
}

std::pair<Tensor, Tensor> arg_reduce(ReduceOp op, const Tensor& x, int64_t dim, bool keepdim) {
  const char* name = op == ReduceOp::Max ? "argmax" : op == ReduceOp::Min ? "argmin" : "arg_reduce";
  check_defined(name, x);
  MG_CHECK(op == ReduceOp::Max || op == ReduceOp::Min, name, ": only max and min have an arg form");
  const int d = wrap_dim(name, dim, x.dim());
  const Tensor x1 = at_least_1d(x);
  Shape kept = x1.shape();
  kept[d] = 1;
  Tensor values = Tensor::empty(kept, x.dtype(), x.device());
  Tensor indices = Tensor::empty(kept, kInt64, x.device());
  if (values.numel() > 0) {
    MG_CHECK(x1.shape()[d] > 0, name, ": cannot reduce over an empty dimension (input ", describe(x), ", dim ", d, ")");
    backend(values).arg_reduce(op, x1, d, values, indices);
  }
  if (keepdim && x.dim() > 0) return {values, indices};
  const Shape squeezed = x.dim() == 0 ? Shape{} : reduced_shape(x.shape(), {d}, false);
  return {reshape_contiguous(values, squeezed), reshape_contiguous(indices, squeezed)};
}

namespace {

// Views the batch dims [0, nbatch) of t as one dim, returning (count, stride), when the layout
// allows it without a copy (size-1 dims are ignored; stride-0 broadcast dims collapse with
// each other). Returns false otherwise.
bool collapse_batch(const Tensor& t, size_t nbatch, int64_t& count, int64_t& stride) {
  count = 1;
  stride = 0;
  bool first = true;
  int64_t prev_stride = 0;
  for (size_t i = 0; i < nbatch; ++i) {
    const int64_t size = t.shape()[i];
    count *= size;
    if (size == 1) continue;
    if (!first && prev_stride != t.strides()[i] * size) return false;
    prev_stride = t.strides()[i];
    first = false;
  }
  stride = prev_stride;
  return true;
}

// t (with nbatch leading batch dims and 2 matrix dims) as a [B, R, C] view, copying only when
// the batch dims cannot be collapsed.
Tensor as_batched_3d(const Tensor& t, size_t nbatch) {
  int64_t count = 0, stride = 0;
  Tensor src = t;
  if (!collapse_batch(src, nbatch, count, stride)) {
    src = clone(src);
    collapse_batch(src, nbatch, count, stride);
  }
  const size_t nd = src.shape().size();
  return Tensor::make_view(src, {count, src.shape()[nd - 2], src.shape()[nd - 1]},
                           {stride, src.strides()[nd - 2], src.strides()[nd - 1]}, src.offset());
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_defined("matmul", a, "first input");
  check_defined("matmul", b, "second input");
  check_same_dtype("matmul", a, b);
  check_same_device("matmul", a, b);
  MG_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: both arguments must have at least 1 dim, got shapes ",
           shape_str(a.shape()), " and ", shape_str(b.shape()));
  MG_CHECK(is_floating(a.dtype()), "matmul: dtype ", a.dtype(), " is not supported (needs float32 or float64)");

  // Promote 1-d operands: [K] @ ... is [1,K] @ ..., ... @ [K] is ... @ [K,1].
  const Tensor a2 = a.dim() == 1 ? Tensor::make_view(a, {1, a.shape()[0]}, {0, a.strides()[0]}, a.offset()) : a;
  const Tensor b2 = b.dim() == 1 ? Tensor::make_view(b, {b.shape()[0], 1}, {b.strides()[0], 0}, b.offset()) : b;
  const int64_t m = a2.shape()[a2.dim() - 2], k = a2.shape()[a2.dim() - 1];
  const int64_t k2 = b2.shape()[b2.dim() - 2], n = b2.shape()[b2.dim() - 1];
  MG_CHECK(k == k2, "matmul: shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()), " do not match (", k,
           " != ", k2, ")");

  const Shape batch_a(a2.shape().begin(), a2.shape().end() - 2);
  const Shape batch_b(b2.shape().begin(), b2.shape().end() - 2);
  const Shape batch = broadcast_shapes("matmul", batch_a, batch_b);
  Shape full_a = batch, full_b = batch;
  full_a.insert(full_a.end(), {m, k});
  full_b.insert(full_b.end(), {k, n});
  const int64_t nbatch = numel_of(batch);

  Tensor out3 = Tensor::empty({nbatch, m, n}, a.dtype(), a.device());
  if (out3.numel() > 0) {
    if (k == 0) {
      backend(out3).fill(out3, 0.0);
    } else {
      const Tensor a3 = as_batched_3d(expand_to("matmul", a2, full_a), batch.size());
      const Tensor b3 = as_batched_3d(expand_to("matmul", b2, full_b), batch.size());
      backend(out3).matmul(a3, b3, out3);
    }
  }
  Shape shape = batch;
  if (a.dim() > 1) shape.push_back(m);
  if (b.dim() > 1) shape.push_back(n);
  return reshape_contiguous(out3, shape);
}

Tensor softmax(const Tensor& x, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  check_defined(name, x);
  MG_CHECK(is_floating(x.dtype()), name, ": dtype ", x.dtype(), " is not supported (needs float32 or float64)");
  const int d = wrap_dim(name, dim, x.dim());
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0) backend(out).softmax(at_least_1d(x), d, log, at_least_1d(out));
  return out;
}

Tensor softmax_backward(const Tensor& y, const Tensor& grad, int64_t dim, bool log) {
  const char* name = log ? "log_softmax_backward" : "softmax_backward";
  check_defined(name, y, "output");
  check_defined(name, grad, "grad");
  MG_CHECK(is_floating(y.dtype()), name, ": dtype ", y.dtype(), " is not supported (needs float32 or float64)");
  check_same_dtype(name, y, grad);
  check_same_device(name, y, grad);
  MG_CHECK(y.shape() == grad.shape(), name, ": grad of shape ", shape_str(grad.shape()), " does not match output ",
           shape_str(y.shape()));
  const int d = wrap_dim(name, dim, y.dim());
  Tensor out = Tensor::empty(y.shape(), y.dtype(), y.device());
  if (out.numel() > 0) backend(out).softmax_backward(at_least_1d(y), at_least_1d(grad), d, log, at_least_1d(out));
  return out;
}

LayerNormResult layer_norm(const Tensor& x, int64_t normalized_dims, const Tensor& weight, const Tensor& bias,
                           double eps) {
  const char* name = "layer_norm";
  check_defined(name, x);
  MG_CHECK(is_floating(x.dtype()), name, ": dtype ", x.dtype(), " is not supported (needs float32 or float64)");
  MG_CHECK(normalized_dims >= 1 && normalized_dims <= x.dim(), name, ": cannot normalise the last ", normalized_dims,
           " dims of an input of shape ", shape_str(x.shape()));
  MG_CHECK(eps >= 0.0, name, ": eps must be >= 0, got ", eps);
  const Shape normalized(x.shape().end() - normalized_dims, x.shape().end());
  for (const Tensor* p : {&weight, &bias}) {
    if (!p->defined()) continue;
    const char* what = p == &weight ? "weight" : "bias";
    MG_CHECK(p->shape() == normalized, name, ": ", what, " of shape ", shape_str(p->shape()),
             " does not match normalized shape ", shape_str(normalized), " of input ", shape_str(x.shape()));
    check_same_dtype(name, x, *p);
    check_same_device(name, x, *p);
  }
  const int64_t cols = numel_of(normalized);
  const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  Shape stat_shape = x.shape();
  for (int64_t d = x.dim() - normalized_dims; d < x.dim(); ++d) stat_shape[d] = 1;
  LayerNormResult r{Tensor::empty(x.shape(), x.dtype(), x.device()), Tensor::empty(stat_shape, x.dtype(), x.device()),
                    Tensor::empty(stat_shape, x.dtype(), x.device())};
  if (x.numel() == 0) return r;
  auto flat = [](const Tensor& t, int64_t n) { return as_strided(t, {n}, {1}, t.offset()); };
  const Tensor xc = contiguous(x);
  backend(r.out).layer_norm(as_strided(xc, {rows, cols}, {cols, 1}, xc.offset()),
                            weight.defined() ? flat(contiguous(weight), cols) : Tensor(),
                            bias.defined() ? flat(contiguous(bias), cols) : Tensor(), eps,
                            as_strided(r.out, {rows, cols}, {cols, 1}, 0), flat(r.mean, rows), flat(r.rstd, rows));
  return r;
}

void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
               const Tensor& max_exp_avg_sq, const Backend::AdamStep& step) {
  const char* name = "adam_step";
  check_defined(name, param, "param");
  check_defined(name, grad, "grad");
  MG_CHECK(is_floating(param.dtype()), name, ": dtype ", param.dtype(), " is not supported (needs float32 or float64)");
  std::vector<std::pair<const Tensor*, const char*>> state{{&exp_avg, "exp_avg"}, {&exp_avg_sq, "exp_avg_sq"}};
  if (step.amsgrad) state.push_back({&max_exp_avg_sq, "max_exp_avg_sq"});
  MG_CHECK(param.is_contiguous(), name, ": param must be contiguous, got shape ", shape_str(param.shape()));
  for (const auto& [t, what] : state) {
    check_defined(name, *t, what);
    MG_CHECK(t->shape() == param.shape() && t->is_contiguous(), name, ": ", what, " of shape ", shape_str(t->shape()),
             " must be contiguous with param's shape ", shape_str(param.shape()));
    check_same_dtype(name, param, *t);
    check_same_device(name, param, *t);
  }
  MG_CHECK(grad.shape() == param.shape(), name, ": grad of shape ", shape_str(grad.shape()),
           " does not match param of shape ", shape_str(param.shape()));
  check_same_dtype(name, param, grad);
  check_same_device(name, param, grad);
  if (param.numel() == 0) return;
  backend(param).adam_step(param, contiguous(grad), exp_avg, exp_avg_sq, step.amsgrad ? max_exp_avg_sq : Tensor(),
                           step);
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check_defined("index_select", x);
  check_index_tensor("index_select", index, x);
  MG_CHECK(x.dim() >= 1, "index_select: input must have at least 1 dim, got shape ", shape_str(x.shape()));
  MG_CHECK(index.dim() <= 1, "index_select: index must be 1-d, got shape ", shape_str(index.shape()));
  const int d = wrap_dim("index_select", dim, x.dim());
  check_index_range("index_select", index, x.shape()[d], d);
  Shape shape = x.shape();
  shape[d] = index.numel();
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  if (out.numel() > 0) backend(out).index_select(x, d, at_least_1d(index), out);
  return out;
}

Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  check_defined("index_add", x);
  check_defined("index_add", src, "src");
  check_index_tensor("index_add", index, x);
  check_same_dtype("index_add", x, src);
  check_same_device("index_add", x, src);
  MG_CHECK(x.dim() >= 1, "index_add: input must have at least 1 dim, got shape ", shape_str(x.shape()));
  MG_CHECK(index.dim() <= 1, "index_add: index must be 1-d, got shape ", shape_str(index.shape()));
  const int d = wrap_dim("index_add", dim, x.dim());
  Shape expected = x.shape();
  expected[d] = index.numel();
  MG_CHECK(src.shape() == expected, "index_add: src has shape ", shape_str(src.shape()), " but input ",
           shape_str(x.shape()), " with ", index.numel(), " indices along dim ", d, " needs ", shape_str(expected));
  check_index_range("index_add", index, x.shape()[d], d);
  Tensor out = clone(x);
  if (src.numel() > 0) backend(out).index_add(out, d, at_least_1d(index), src);
  return out;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index, bool check_range) {
  check_defined("gather", x);
  check_index_tensor("gather", index, x);
  MG_CHECK(index.dim() == x.dim(), "gather: index has ", index.dim(), " dims but input has ", x.dim());
  const int d = wrap_dim("gather", dim, x.dim());
  for (int64_t i = 0; i < x.dim(); ++i)
    MG_CHECK(i == d || index.shape()[i] <= x.shape()[i], "gather: index shape ", shape_str(index.shape()),
             " is larger than input shape ", shape_str(x.shape()), " at dim ", i);
  const Tensor x1 = at_least_1d(x);
  if (check_range) check_index_range("gather", index, x1.shape()[d], d);
  Tensor out = Tensor::empty(index.shape(), x.dtype(), x.device());
  if (out.numel() > 0) backend(out).gather(x1, d, at_least_1d(index), at_least_1d(out));
  return out;
}

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  check_defined("scatter_add", x);
  check_defined("scatter_add", src, "src");
  check_index_tensor("scatter_add", index, x);
  check_same_dtype("scatter_add", x, src);
  check_same_device("scatter_add", x, src);
  MG_CHECK(index.dim() == x.dim() && src.dim() == x.dim(), "scatter_add: index has ", index.dim(), " dims, src has ",
           src.dim(), " and input has ", x.dim(), "; they must match");
  const int d = wrap_dim("scatter_add", dim, x.dim());
  for (int64_t i = 0; i < x.dim(); ++i) {
    MG_CHECK(index.shape()[i] <= src.shape()[i], "scatter_add: index shape ", shape_str(index.shape()),
             " is larger than src shape ", shape_str(src.shape()), " at dim ", i);
    MG_CHECK(i == d || index.shape()[i] <= x.shape()[i], "scatter_add: index shape ", shape_str(index.shape()),
             " is larger than input shape ", shape_str(x.shape()), " at dim ", i);
  }
  const Tensor x1 = at_least_1d(x);
  check_index_range("scatter_add", index, x1.shape()[d], d);
  Tensor out = clone(x1);
  if (index.numel() > 0) {
    // Only the part of src that index covers takes part.
    const Tensor src_part = Tensor::make_view(src, index.shape(), src.strides(), src.offset());
    backend(out).scatter_add(out, d, at_least_1d(index), at_least_1d(src_part));
  }
  return x.dim() == 0 ? reshape_contiguous(out, {}) : out;
}

Tensor concat(const std::vector<Tensor>& tensors, int64_t dim) {
  MG_CHECK(!tensors.empty(), "concat: expected at least one tensor");
  for (size_t i = 0; i < tensors.size(); ++i) check_defined("concat", tensors[i], "tensor " + std::to_string(i));
  const Tensor& first = tensors[0];
  MG_CHECK(first.dim() >= 1, "concat: zero-dim tensor 0 cannot be concatenated");
  const int d = wrap_dim("concat", dim, first.dim());
  Shape shape = first.shape();
  shape[d] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    MG_CHECK(t.dtype() == first.dtype(), "concat: tensor ", i, " has dtype ", t.dtype(), " but tensor 0 has ",
             first.dtype());
    MG_CHECK(t.device() == first.device(), "concat: tensor ", i, " is on ", t.device(), " but tensor 0 is on ",
             first.device());
    MG_CHECK(t.dim() == first.dim(), "concat: tensor ", i, " has shape ", shape_str(t.shape()), " but tensor 0 has ",
             shape_str(first.shape()), "; they need the same number of dims");
    for (int64_t j = 0; j < t.dim(); ++j)
      MG_CHECK(j == d || t.shape()[j] == first.shape()[j], "concat: tensor ", i, " has shape ", shape_str(t.shape()),
               " but tensor 0 has ", shape_str(first.shape()), "; sizes must match except in dim ", d);
    shape[d] += t.shape()[d];
  }
  Tensor out = Tensor::empty(shape, first.dtype(), first.device());
  int64_t start = 0;
  for (const Tensor& t : tensors) {
    const int64_t len = t.shape()[d];
    if (len > 0 && t.numel() > 0) {
      Shape part_shape = shape;
      part_shape[d] = len;
      const Tensor part = Tensor::make_view(out, part_shape, out.strides(), out.offset() + start * out.strides()[d]);
      backend(out).copy(t, part);
    }
    start += len;
  }
  return out;
}

}  // namespace mg::kernels
