// Convolution and pooling in 2-D. The window primitives are unfold (im2col) and fold (col2im),
// adjoint linear maps: each one's backward is the other, so a gradient of any order through a
// window op stays inside this pair plus matmul and reshape.
//
// A convolution is three ops, closed under differentiation, each computed by the convolution
// kernels of tensor/kernels_conv.cpp (Winograd or grouped im2col + GEMM, never the whole batch's
// columns). With g the output gradient:
//   y  = conv2d(x, W) + b
//   dx = conv2d_input_grad(g, W)    (fold(W^T g): the adjoint of conv2d in x)
//   dW = conv2d_weight_grad(g, x)   (the sum over the images of g unfold(x)^T: the adjoint in W)
// and each is linear in each of its two tensors, so each one's backward is the other two:
//   conv2d:             dx = conv2d_input_grad(g, W),   dW = conv2d_weight_grad(g, x),  db = sum(g)
//   conv2d_input_grad:  dg = conv2d(d, W),              dW = conv2d_weight_grad(g, d)
//   conv2d_weight_grad: dg = conv2d(x, d),              dx = conv2d_input_grad(g, d)
// (d the gradient arriving at the op's output). A second-order meta-gradient through a
// convolution is then convolutions too, at the kernels' speed, and no node saves more than its
// two operands: never the im2col columns, which are kh*kw times the input.
//
// max_pool2d reads the planes directly and saves only the int64 positions of the maxima. Its
// backward places the gradient at them (max_unpool2d), whose backward gathers from them again:
// both linear in the gradient, so every order of derivative is one of the two.
#include "../tensor/kernels.h"
#include "ops.h"
#include "record.h"

namespace mg {
namespace {

Window2d make_window(std::string_view op, Size2d kernel, Size2d stride, Size2d padding, Size2d dilation) {
  Window2d w;
  w.kh = kernel.h, w.kw = kernel.w;
  w.sh = stride.h, w.sw = stride.w;
  w.ph = padding.h, w.pw = padding.w;
  w.dh = dilation.h, w.dw = dilation.w;
  kernels::check_window(op, w);
  return w;
}

Tensor fold_window(const Tensor& cols, int64_t height, int64_t width, const Window2d& w, std::string_view op);

// Padding reads zeros; the backward (fold) drops whatever gradient lands there.
Tensor unfold_window(const Tensor& x, const Window2d& w, std::string_view op) {
  Tensor cols = kernels::im2col(x, w, 0.0, op);
  if (should_record(x))
    record(OpId::unfold2d, {x}, cols, {}, [w, h = x.size(2), wd = x.size(3)](const BackwardArgs& g) -> TensorList {
      return {fold_window(g.grad, h, wd, w, "unfold2d backward")};
    });
  return cols;
}

Tensor fold_window(const Tensor& cols, int64_t height, int64_t width, const Window2d& w, std::string_view op) {
  Tensor out = kernels::col2im(cols, height, width, w, op);
  if (should_record(cols))
    record(OpId::fold2d, {cols}, out, {},
           [w](const BackwardArgs& g) -> TensorList { return {unfold_window(g.grad, w, "fold2d backward")}; });
  return out;
}

void check_image(std::string_view op, const Tensor& x) {
  kernels::check_defined(op, x);
  MG_CHECK(x.dim() == 4, op, ": expected a 4-D [N,C,H,W] input, got ", describe(x));
  MG_CHECK(is_floating(x.dtype()), op, ": dtype ", x.dtype(), " is not supported (needs float32 or float64); input ",
           describe(x));
}

}  // namespace

Tensor unfold2d(const Tensor& x, Size2d kernel, Size2d stride, Size2d padding, Size2d dilation) {
  return unfold_window(x, make_window("unfold2d", kernel, stride, padding, dilation), "unfold2d");
}

Tensor fold2d(const Tensor& cols, Size2d output_size, Size2d kernel, Size2d stride, Size2d padding, Size2d dilation) {
  return fold_window(cols, output_size.h, output_size.w, make_window("fold2d", kernel, stride, padding, dilation),
                     "fold2d");
}

namespace {

// The three convolution ops on a checked window; per_task: 5-D operands, a weight per task.
Tensor conv_window(const Tensor& x, const Tensor& weight, const Tensor& bias, const Window2d& w, bool per_task);
Tensor input_grad_window(const Tensor& grad, const Tensor& weight, int64_t height, int64_t width, const Window2d& w,
                         bool per_task);
Tensor weight_grad_window(const Tensor& grad, const Tensor& x, const Window2d& w, bool per_task);

Tensor conv_window(const Tensor& x, const Tensor& weight, const Tensor& bias, const Window2d& w, bool per_task) {
  Tensor out = per_task ? kernels::conv2d_per_task(x, weight, bias, w) : kernels::conv2d(x, weight, bias, w);
  const TensorList inputs = defined_only({x, weight, bias});
  if (!should_record_list(inputs)) return out;
  const bool has_bias = bias.defined();
  record(OpId::conv2d, inputs, out, {x, weight}, [w, has_bias, per_task](const BackwardArgs& a) -> TensorList {
    const Tensor &x = a.saved[0], &weight = a.saved[1];
    TensorList grads(has_bias ? 3 : 2);
    if (has_bias && a.needs_input(2)) grads[2] = per_task ? sum(a.grad, {1, 3, 4}) : sum(a.grad, {0, 2, 3});
    if (a.needs_input(0)) grads[0] = input_grad_window(a.grad, weight, x.size(-2), x.size(-1), w, per_task);
    if (a.needs_input(1)) grads[1] = weight_grad_window(a.grad, x, w, per_task);
    return grads;
  });
  return out;
}

Tensor input_grad_window(const Tensor& grad, const Tensor& weight, int64_t height, int64_t width, const Window2d& w,
                         bool per_task) {
  Tensor dx = per_task ? kernels::conv2d_per_task_input_grad(grad, weight, height, width, w)
                       : kernels::conv2d_input_grad(grad, weight, height, width, w);
  if (should_record(grad, weight))
    record(OpId::conv2d_input_grad, {grad, weight}, dx, {grad, weight},
           [w, per_task](const BackwardArgs& a) -> TensorList {
             const Tensor &grad = a.saved[0], &weight = a.saved[1];
             TensorList grads(2);
             if (a.needs_input(0)) grads[0] = conv_window(a.grad, weight, Tensor(), w, per_task);
             if (a.needs_input(1)) grads[1] = weight_grad_window(grad, a.grad, w, per_task);
             return grads;
           });
  return dx;
}

Tensor weight_grad_window(const Tensor& grad, const Tensor& x, const Window2d& w, bool per_task) {
  Tensor dweight =
      per_task ? kernels::conv2d_per_task_weight_grad(grad, x, w) : kernels::conv2d_weight_grad(grad, x, w);
  if (should_record(grad, x))
    record(OpId::conv2d_weight_grad, {grad, x}, dweight, {grad, x}, [w, per_task](const BackwardArgs& a) -> TensorList {
      const Tensor &grad = a.saved[0], &x = a.saved[1];
      TensorList grads(2);
      if (a.needs_input(0)) grads[0] = conv_window(x, a.grad, Tensor(), w, per_task);
      if (a.needs_input(1)) grads[1] = input_grad_window(grad, a.grad, x.size(-2), x.size(-1), w, per_task);
      return grads;
    });
  return dweight;
}

// The operands of conv2d_input_grad and conv2d_weight_grad: the gradient [N,O,oh,ow] and the
// other one 4-D, or both per task [T, ...] (5-D, as many tasks); floating, one dtype and device.
// Returns whether they come per task.
bool per_task_operands(std::string_view op, const Tensor& grad, const Tensor& other, const char* other_name) {
  kernels::check_defined(op, grad, "grad");
  kernels::check_defined(op, other, other_name);
  const bool per_task = other.dim() == 5;
  MG_CHECK((per_task && grad.dim() == 5 && grad.size(0) == other.size(0)) || (other.dim() == 4 && grad.dim() == 4), op,
           ": grad ", describe(grad), " and ", other_name, " ", describe(other),
           " must be 4-D, or 5-D per task with as many tasks");
  MG_CHECK(is_floating(grad.dtype()), op, ": dtype ", grad.dtype(),
           " is not supported (needs float32 or float64); grad ", describe(grad));
  MG_CHECK(other.dtype() == grad.dtype() && other.device() == grad.device(), op, ": grad ", describe(grad), " and ",
           other_name, " ", describe(other), " must have the same dtype and device");
  return per_task;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Size2d stride, Size2d padding,
              Size2d dilation) {
  kernels::check_defined("conv2d", weight, "weight");
  // Per-task weights [T,O,C,kh,kw] (a task-batched meta-step) convolve task-batched images
  // [T,N,C,H,W], each task with its own weight.
  const bool per_task = weight.dim() == 5;
  if (per_task) {
    kernels::check_defined("conv2d", x);
    MG_CHECK(x.dim() == 5 && x.size(0) == weight.size(0), "conv2d: per-task weight ", describe(weight),
             " needs task-batched images [T,N,C,H,W] with as many tasks, got ", describe(x));
  } else {
    check_image("conv2d", x);
    MG_CHECK(weight.dim() == 4, "conv2d: weight must be 4-D [out_channels, in_channels, kh, kw], got ",
             describe(weight));
  }
  const int64_t lead = per_task ? 1 : 0;  // dims before N of x (and before O of the weight)
  MG_CHECK(weight.dtype() == x.dtype() && weight.device() == x.device(), "conv2d: input ", describe(x),
           " and weight ", describe(weight), " must have the same dtype and device");
  const int64_t c = x.size(lead + 1), o = weight.size(lead);
  MG_CHECK(weight.size(lead + 1) == c, "conv2d: input ", describe(x), " has ", c, " channels but weight ",
           describe(weight), " expects ", weight.size(lead + 1));
  if (bias.defined()) {
    const Shape expected = per_task ? Shape{weight.size(0), o} : Shape{o};
    MG_CHECK(bias.shape() == expected, "conv2d: bias must be ", per_task ? "2-D " : "1-D ", shape_str(expected),
             " for weight ", describe(weight), ", got ", describe(bias));
    MG_CHECK(bias.dtype() == x.dtype() && bias.device() == x.device(), "conv2d: bias ", describe(bias),
             " must have the input's dtype and device (", describe(x), ")");
  }
  const Window2d w = make_window("conv2d", {weight.size(lead + 2), weight.size(lead + 3)}, stride, padding, dilation);
  return conv_window(x, weight, bias, w, per_task);
}

Tensor conv2d_input_grad(const Tensor& grad, const Tensor& weight, Size2d input_size, Size2d stride, Size2d padding,
                         Size2d dilation) {
  const bool per_task = per_task_operands("conv2d_input_grad", grad, weight, "weight");
  const int64_t lead = per_task ? 1 : 0;
  MG_CHECK(input_size.h > 0 && input_size.w > 0, "conv2d_input_grad: input size (", input_size.h, ",", input_size.w,
           ") must be positive");
  const Window2d w =
      make_window("conv2d_input_grad", {weight.size(lead + 2), weight.size(lead + 3)}, stride, padding, dilation);
  const int64_t oh = w.out_h(input_size.h), ow = w.out_w(input_size.w);
  MG_CHECK(grad.size(-3) == weight.size(lead) && grad.size(-2) == oh && grad.size(-1) == ow && oh > 0 && ow > 0,
           "conv2d_input_grad: grad ", describe(grad), " is not the output of weight ", describe(weight), " over a ",
           input_size.h, "x", input_size.w, " input (", weight.size(lead), " channels of ", oh, "x", ow, ")");
  return input_grad_window(grad, weight, input_size.h, input_size.w, w, per_task);
}

Tensor conv2d_weight_grad(const Tensor& grad, const Tensor& x, Size2d kernel, Size2d stride, Size2d padding,
                          Size2d dilation) {
  const bool per_task = per_task_operands("conv2d_weight_grad", grad, x, "input");
  const Window2d w = make_window("conv2d_weight_grad", kernel, stride, padding, dilation);
  const int64_t oh = w.out_h(x.size(-2)), ow = w.out_w(x.size(-1));
  MG_CHECK(grad.size(-4) == x.size(-4) && grad.size(-2) == oh && grad.size(-1) == ow && oh > 0 && ow > 0,
           "conv2d_weight_grad: grad ", describe(grad), " is not the output of input ", describe(x), " under a ",
           kernel.h, "x", kernel.w, " kernel (as many images, each ", oh, "x", ow, ")");
  return weight_grad_window(grad, x, w, per_task);
}

namespace {

Tensor unpool(const Tensor& x, const Tensor& indices, int64_t height, int64_t width, bool check_range);

// The adjoint of unpool: each plane of g [N,C,height,width] read at indices [N,C,oh,ow], which
// were checked (or made by max_pool2d) on the way in, so no host reads them again: a captured
// device graph could not. A gather, recorded as one; its backward is unpool again.
Tensor pick(const Tensor& g, const Tensor& indices) {
  const int64_t n = indices.size(0), c = indices.size(1), height = g.size(2), width = g.size(3);
  auto view = [](const Tensor& t, const Shape& shape) {  // t contiguous
    return Tensor::make_view(t, shape, contiguous_strides(shape), t.offset());
  };
  const Tensor planes = kernels::contiguous(g.detach()), at = kernels::contiguous(indices);
  const Tensor flat = kernels::gather(view(planes, {n, c, height * width}), 2,
                                      view(at, {n, c, indices.size(2) * indices.size(3)}), /*check_range=*/false);
  Tensor out = view(flat, indices.shape());
  if (should_record(g))
    record(OpId::gather, {g}, out, {indices}, [height, width](const BackwardArgs& a) -> TensorList {
      return {unpool(a.grad, a.saved[0], height, width, false)};
    });
  return out;
}

// Places x at its positions in zeros [N,C,height,width]; indices are trusted when they come from
// max_pool2d. Recorded, its backward gathers the gradient back from the same positions.
Tensor unpool(const Tensor& x, const Tensor& indices, int64_t height, int64_t width, bool check_range) {
  Tensor out = kernels::max_unpool2d(x, indices, height, width, check_range);
  if (should_record(x))
    record(OpId::max_unpool2d, {x}, out, {indices},
           [](const BackwardArgs& a) -> TensorList { return {pick(a.grad, a.saved[0])}; });
  return out;
}

}  // namespace

std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& x, Size2d kernel, Size2d stride, Size2d padding,
                                                  Size2d dilation) {
  check_image("max_pool2d", x);
  const Window2d w = make_window("max_pool2d", kernel, stride, padding, dilation);
  auto [out, indices] = kernels::max_pool2d(x, w);
  if (should_record(x))
    record(OpId::max_pool2d, {x}, out, {indices}, [h = x.size(2), wd = x.size(3)](const BackwardArgs& a) -> TensorList {
      return {unpool(a.grad, a.saved[0], h, wd, false)};
    });
  return {out, indices};
}

Tensor max_pool2d(const Tensor& x, Size2d kernel) { return max_pool2d(x, kernel, kernel); }

Tensor max_pool2d(const Tensor& x, Size2d kernel, Size2d stride, Size2d padding, Size2d dilation) {
  return max_pool2d_with_indices(x, kernel, stride, padding, dilation).first;
}

Tensor max_unpool2d(const Tensor& x, const Tensor& indices, Size2d output_size) {
  return unpool(x, indices, output_size.h, output_size.w, true);
}

}  // namespace mg
