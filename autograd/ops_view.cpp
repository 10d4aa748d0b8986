// Views share storage with their input; each one's backward maps the gradient back to the
// input's geometry (the inverse permutation, a reshape, zero padding, or a sum over broadcasts).
#include <algorithm>
#include <numeric>

#include "../tensor/kernels.h"
#include "ops.h"
#include "record.h"

namespace mg {
namespace {

Shape infer_shape(std::string_view op, const Tensor& x, const Shape& requested) {
  Shape shape = requested;
  int infer = -1;
  int64_t known = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      MG_CHECK(infer < 0, op, ": only one dim can be -1 in ", shape_str(requested));
      infer = static_cast<int>(i);
    } else {
      MG_CHECK(shape[i] >= 0, op, ": invalid size ", shape[i], " in ", shape_str(requested));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    MG_CHECK(known != 0 && x.numel() % known == 0, op, ": shape ", shape_str(requested),
             " is invalid for a tensor of ", x.numel(), " elements (", describe(x), ")");
    shape[infer] = x.numel() / known;
  }
  MG_CHECK(numel_of(shape) == x.numel(), op, ": shape ", shape_str(requested), " is invalid for a tensor of ",
           x.numel(), " elements (", describe(x), ")");
  return shape;
}

// The strides that let a view of x take shape without copying, if any: runs of x's dims that
// are contiguous with each other can be split and merged freely.
bool view_strides(const Tensor& x, const Shape& shape, Strides& out) {
  if (x.is_contiguous()) {
    out = contiguous_strides(shape);
    return true;
  }
  const Shape& old_shape = x.shape();
  const Strides& old_strides = x.strides();
  out.assign(shape.size(), 0);
  if (x.numel() == 0) {
    out = contiguous_strides(shape);
    return true;
  }
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = old_strides.empty() ? 1 : old_strides.back();
  int64_t tensor_numel = 1;
  int64_t view_numel = 1;
  for (int64_t tensor_d = static_cast<int64_t>(old_shape.size()) - 1; tensor_d >= 0; --tensor_d) {
    tensor_numel *= old_shape[tensor_d];
    if (tensor_d == 0 || (old_shape[tensor_d - 1] != 1 &&
                          old_strides[tensor_d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (tensor_d > 0) {
        chunk_base_stride = old_strides[tensor_d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

Tensor view_or_copy(std::string_view op, const Tensor& x, const Shape& requested, bool allow_copy) {
  kernels::check_defined(op, x);
  const Shape shape = infer_shape(op, x, requested);
  Strides strides;
  Tensor y;
  if (view_strides(x, shape, strides)) {
    y = Tensor::make_view(x, shape, strides, x.offset());
  } else {
    MG_CHECK(allow_copy, op, ": ", describe(x), " with strides ", shape_str(x.strides()),
             " cannot be viewed as ", shape_str(shape), " without a copy; use reshape()");
    Tensor c = kernels::contiguous(x);
    y = Tensor::make_view(c, shape, contiguous_strides(shape), c.offset());
  }
  if (should_record(x))
    record(OpId::reshape, {x}, y, {}, [in_shape = x.shape()](const BackwardArgs& g) -> TensorList {
      return {reshape(g.grad, in_shape)};
    });
  return y;
}

}  // namespace

Tensor reshape(const Tensor& x, const Shape& shape) { return view_or_copy("reshape", x, shape, true); }
Tensor view(const Tensor& x, const Shape& shape) { return view_or_copy("view", x, shape, false); }

Tensor transpose(const Tensor& x, int64_t dim0_in, int64_t dim1_in) {
  kernels::check_defined("transpose", x);
  const int d0 = wrap_dim("transpose", dim0_in, x.dim());
  const int d1 = wrap_dim("transpose", dim1_in, x.dim());
  Shape shape = x.shape();
  Strides strides = x.strides();
  if (x.dim() > 0) {
    std::swap(shape[d0], shape[d1]);
    std::swap(strides[d0], strides[d1]);
  }
  Tensor y = Tensor::make_view(x, shape, strides, x.offset());
  if (should_record(x))
    record(OpId::transpose, {x}, y, {}, [d0, d1](const BackwardArgs& g) -> TensorList {
      return {transpose(g.grad, d0, d1)};
    });
  return y;
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  kernels::check_defined("permute", x);
  MG_CHECK(static_cast<int64_t>(dims.size()) == x.dim(), "permute: ", dims.size(), " dims given for ", describe(x));
  std::vector<int64_t> order(dims.size());
  std::vector<bool> seen(dims.size(), false);
  Shape shape(dims.size());
  Strides strides(dims.size());
  for (std::size_t i = 0; i < dims.size(); ++i) {
    const int d = wrap_dim("permute", dims[i], x.dim());
    MG_CHECK(!seen[d], "permute: dim ", d, " appears twice");
    seen[d] = true;
    order[i] = d;
    shape[i] = x.size(d);
    strides[i] = x.stride(d);
  }
  Tensor y = Tensor::make_view(x, shape, strides, x.offset());
  if (should_record(x)) {
    std::vector<int64_t> inverse(order.size());
    for (std::size_t i = 0; i < order.size(); ++i) inverse[order[i]] = static_cast<int64_t>(i);
    record(OpId::permute, {x}, y, {}, [inverse](const BackwardArgs& g) -> TensorList { return {permute(g.grad, inverse)}; });
  }
  return y;
}

// The adjoint of narrow pads the gradient with zeros on both sides: written as a concat, so it
// is itself differentiable.
Tensor narrow(const Tensor& x, int64_t dim_in, int64_t start, int64_t length) {
  kernels::check_defined("narrow", x);
  MG_CHECK(x.dim() > 0, "narrow: cannot narrow a 0-d tensor");
  const int dim = wrap_dim("narrow", dim_in, x.dim());
  const int64_t size = x.size(dim);
  if (start < 0) start += size;
  MG_CHECK(start >= 0 && length >= 0 && start + length <= size, "narrow: range [", start, ", ", start + length,
           ") is out of bounds for dim ", dim, " of size ", size, " (", describe(x), ")");
  Shape shape = x.shape();
  shape[dim] = length;
  Tensor y = Tensor::make_view(x, shape, x.strides(), x.offset() + start * x.stride(dim));
  if (should_record(x))
    record(OpId::narrow, {x}, y, {}, [dim, start, length, in_shape = x.shape()](const BackwardArgs& g) -> TensorList {
      Shape before = in_shape, after = in_shape;
      before[dim] = start;
      after[dim] = in_shape[dim] - start - length;
      return {concat({zeros(before, g.grad.dtype(), g.grad.device()), g.grad,
                      zeros(after, g.grad.dtype(), g.grad.device())},
                     dim)};
    });
  return y;
}

Tensor slice(const Tensor& x, int64_t dim_in, int64_t start, int64_t end, int64_t step) {
  kernels::check_defined("slice", x);
  MG_CHECK(x.dim() > 0, "slice: cannot slice a 0-d tensor");
  MG_CHECK(step > 0, "slice: step must be positive, got ", step);
  const int dim = wrap_dim("slice", dim_in, x.dim());
  const int64_t size = x.size(dim);
  // Python's clamping of out-of-range bounds.
  if (start < 0) start += size;
  if (end < 0) end += size;
  start = std::clamp<int64_t>(start, 0, size);
  end = std::clamp<int64_t>(end, start, size);
  const int64_t length = (end - start + step - 1) / step;
  if (step == 1) return narrow(x, dim, start, length);
  Shape shape = x.shape();
  Strides strides = x.strides();
  shape[dim] = length;
  strides[dim] *= step;
  Tensor y = Tensor::make_view(x, shape, strides, x.offset() + start * x.stride(dim));
  if (should_record(x))
    record(OpId::slice, {x}, y, {},
           [dim, start, step, length, in_shape = x.shape()](const BackwardArgs& g) -> TensorList {
             Tensor rows = arange(static_cast<double>(start), static_cast<double>(start + length * step),
                                  static_cast<double>(step), kInt64, g.grad.device());
             return {index_add(zeros(in_shape, g.grad.dtype(), g.grad.device()), dim, rows, g.grad)};
           });
  return y;
}

Tensor select(const Tensor& x, int64_t dim_in, int64_t index) {
  kernels::check_defined("select", x);
  MG_CHECK(x.dim() > 0, "select: cannot select from a 0-d tensor");
  const int dim = wrap_dim("select", dim_in, x.dim());
  const int64_t size = x.size(dim);
  MG_CHECK(index >= -size && index < size, "select: index ", index, " is out of range for dim ", dim, " of size ",
           size);
  return squeeze(narrow(x, dim, index < 0 ? index + size : index, 1), dim);
}

Tensor expand(const Tensor& x, const Shape& requested) {
  kernels::check_defined("expand", x);
  MG_CHECK(requested.size() >= static_cast<std::size_t>(x.dim()), "expand: cannot expand ", describe(x), " to ",
           shape_str(requested), " (fewer dims)");
  Shape shape = requested;
  const std::size_t lead = requested.size() - x.dim();
  for (std::size_t i = lead; i < shape.size(); ++i)
    if (shape[i] == -1) shape[i] = x.size(static_cast<int64_t>(i - lead));
  Tensor y = kernels::expand_to("expand", x, shape);
  if (y.same(x)) y = Tensor::make_view(x, x.shape(), x.strides(), x.offset());
  if (should_record(x))
    record(OpId::expand, {x}, y, {}, [in_shape = x.shape()](const BackwardArgs& g) -> TensorList {
      return {sum_to(g.grad, in_shape)};
    });
  return y;
}

namespace {
Tensor reshape_view(OpId id, const Tensor& x, const Shape& shape, const Strides& strides) {
  Tensor y = Tensor::make_view(x, shape, strides, x.offset());
  if (should_record(x))
    record(id, {x}, y, {}, [in_shape = x.shape()](const BackwardArgs& g) -> TensorList {
      return {reshape(g.grad, in_shape)};
    });
  return y;
}
}  // namespace

Tensor squeeze(const Tensor& x, int64_t dim_in) {
  kernels::check_defined("squeeze", x);
  const int dim = wrap_dim("squeeze", dim_in, x.dim());
  Shape shape = x.shape();
  Strides strides = x.strides();
  if (x.dim() > 0 && shape[dim] == 1) {
    shape.erase(shape.begin() + dim);
    strides.erase(strides.begin() + dim);
  }
  return reshape_view(OpId::squeeze, x, shape, strides);
}

Tensor squeeze(const Tensor& x) {
  kernels::check_defined("squeeze", x);
  Shape shape;
  Strides strides;
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (x.size(i) == 1) continue;
    shape.push_back(x.size(i));
    strides.push_back(x.stride(i));
  }
  return reshape_view(OpId::squeeze, x, shape, strides);
}

Tensor unsqueeze(const Tensor& x, int64_t dim_in) {
  kernels::check_defined("unsqueeze", x);
  const int dim = wrap_dim("unsqueeze", dim_in, x.dim() + 1);
  Shape shape = x.shape();
  Strides strides = x.strides();
  const int64_t stride = dim < x.dim() ? x.stride(dim) * x.size(dim) : 1;
  shape.insert(shape.begin() + dim, 1);
  strides.insert(strides.begin() + dim, stride);
  return reshape_view(OpId::unsqueeze, x, shape, strides);
}

Tensor contiguous(const Tensor& x) {
  kernels::check_defined("contiguous", x);
  if (x.is_contiguous()) return x;
  Tensor y = kernels::clone(x);
  if (should_record(x))
    record(OpId::contiguous, {x}, y, {}, [](const BackwardArgs& g) -> TensorList { return {g.grad}; });
  return y;
}

Tensor clone(const Tensor& x) {
  Tensor y = kernels::clone(x);
  if (should_record(x)) record(OpId::clone, {x}, y, {}, [](const BackwardArgs& g) -> TensorList { return {g.grad}; });
  return y;
}

Tensor to_dtype(const Tensor& x, DType dtype) {
  kernels::check_defined("to", x);
  if (x.dtype() == dtype) return x;
  Tensor y = kernels::cast(x, dtype);
  if (is_floating(dtype) && should_record(x))
    record(OpId::to_dtype, {x}, y, {}, [from = x.dtype()](const BackwardArgs& g) -> TensorList {
      return {to_dtype(g.grad, from)};
    });
  return y;
}

Tensor to_device(const Tensor& x, Device device) {
  kernels::check_defined("to", x);
  if (x.device() == device) return x;
  Tensor y = kernels::to_device(x, device);
  if (should_record(x))
    record(OpId::to_device, {x}, y, {}, [from = x.device()](const BackwardArgs& g) -> TensorList {
      return {to_device(g.grad, from)};
    });
  return y;
}

}  // namespace mg
