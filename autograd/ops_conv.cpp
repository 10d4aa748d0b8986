// Convolution and pooling in 2-D. The window primitives are unfold (im2col) and fold (col2im),
// adjoint linear maps: each one's backward is the other, so a gradient of any order through a
// window op stays inside this pair plus matmul and reshape.
//
// conv2d is one node that saves x and the weight (4-D, or per task 5-D), not the im2col columns: those are kh*kw times
// the size of x, and kept for every convolution until the backward pass they would dominate the
// tape's memory. With W the weight as [O, C*kh*kw] and g the output gradient as [N, O, L]:
//   dx = fold(W^T g),  dweight = sum over the images of g unfold(x)^T,  dbias = sum of g over N, H, W
// Their values come from the grouped kernels of tensor/kernels_conv.cpp (as the forward does),
// which never hold the whole batch's columns. When the backward is recorded (create_graph), their
// derivatives come from the same formulas in differentiable ops (fused_backward.h), recomputing
// unfold(x) on the tape so that they see how the columns depend on x.
//
// max_pool2d reads the planes directly and saves only the int64 positions of the maxima. Its
// backward places the gradient at them (max_unpool2d), whose backward gathers from them again:
// both linear in the gradient, so every order of derivative is one of the two.
#include "../tensor/kernels.h"
#include "fused_backward.h"
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

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Size2d stride, Size2d padding,
              Size2d dilation) {
  kernels::check_defined("conv2d", weight, "weight");
  // Per-task weights [T,O,C,kh,kw] (a task-batched meta-step) convolve task-batched images
  // [T,N,C,H,W], each task with its own weight; the formulas below carry the task dim along.
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
  Tensor out = per_task ? kernels::conv2d_per_task(x, weight, bias, w) : kernels::conv2d(x, weight, bias, w);
  const TensorList inputs = defined_only({x, weight, bias});
  if (!should_record_list(inputs)) return out;

  const bool has_bias = bias.defined();
  const int64_t height = x.size(-2), width = x.size(-1);
  record(OpId::conv2d, inputs, out, {x, weight},
         [w, has_bias, height, width, per_task](const BackwardArgs& a) -> TensorList {
           const Tensor& x = a.saved[0];
           const Tensor& weight = a.saved[1];
           TensorList grads(has_bias ? 3 : 2);
           if (has_bias && a.needs_input(2)) grads[2] = per_task ? sum(a.grad, {1, 3, 4}) : sum(a.grad, {0, 2, 3});
           // The input and weight gradients from kernels; recorded (create_graph), their derivatives
           // come from the same gradients in differentiable ops (fused_backward.h).
           const bool need_x = a.needs_input(0), need_weight = a.needs_input(1);
           if (!need_x && !need_weight) return grads;
           auto kernel = [=](const TensorList& in) {
             TensorList out;
             if (need_x)
               out.push_back(per_task ? kernels::conv2d_per_task_input_grad(in[2], in[1], height, width, w)
                                      : kernels::conv2d_input_grad(in[2], in[1], height, width, w));
             if (need_weight)
               out.push_back(per_task ? kernels::conv2d_per_task_weight_grad(in[2], in[0], w)
                                      : kernels::conv2d_weight_grad(in[2], in[0], w));
             return out;
           };
           auto formula = [=](const TensorList& in) {
             const Tensor &x = in[0], &weight = in[1];
             // As [B, N, ...] with B = T per task and 1 otherwise: W [B, 1, O, rows], g [B, N, O, L].
             const int64_t b = per_task ? x.size(0) : 1, n = x.size(-4), c = x.size(-3);
             const int64_t o = weight.size(-4), rows = c * weight.size(-2) * weight.size(-1);
             const int64_t length = in[2].size(-2) * in[2].size(-1);
             const Tensor g = reshape(in[2], {b, n, o, length});
             TensorList out;
             if (need_x) {
               const Tensor cols_grad = matmul(transpose(reshape(weight, {b, 1, o, rows}), 2, 3), g);
               const Tensor dx =
                   fold_window(reshape(cols_grad, {b * n, rows, length}), height, width, w, "conv2d backward");
               out.push_back(reshape(dx, x.shape()));
             }
             if (need_weight) {
               // Recorded, so that a higher-order gradient sees how the columns depend on x.
               const Tensor cols = reshape(unfold_window(reshape(x, {b * n, c, height, width}), w, "conv2d backward"),
                                           {b, n, rows, length});
               out.push_back(reshape(sum(matmul(g, transpose(cols, 2, 3)), {1}), weight.shape()));
             }
             return out;
           };
           const TensorList computed = fused_backward("conv2d backward", {x, weight, a.grad}, kernel, formula);
           std::size_t next = 0;
           if (need_x) grads[0] = computed[next++];
           if (need_weight) grads[1] = computed[next];
           return grads;
         });
  return out;
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
