// Convolution kernels (declared in kernels.h): im2col + GEMM, a group of images at a time. A 3x3
// window of stride 1 and padding 1 (conv4's every layer) first goes to the backend's faster path,
// where it has one (Backend::conv3x3: Winograd's F(2x2, 3x3) or F(4x4, 3x3) on the CPU,
// tensor/cpu/cpu_winograd.cpp).
//
// The im2col columns of a whole batch are kh*kw times its input (9x for a 3x3 kernel), the
// largest temporaries of a convolutional network. Working through the batch in groups keeps the
// columns of only a few images alive at once, while each GEMM is still batched over a group's
// images, so the arithmetic is that of one im2col + GEMM over the whole batch.
#include <algorithm>

#include "kernels.h"

namespace mg::kernels {
namespace {

Backend& backend(const Tensor& t) { return backend_for(t.device()); }

// Images [begin, begin + count) of an [N, ...] tensor: a view.
Tensor images(const Tensor& t, int64_t begin, int64_t count) {
  Shape shape = t.shape();
  shape[0] = count;
  return Tensor::make_view(t, shape, t.strides(), t.offset() + begin * t.strides()[0]);
}

// A contiguous tensor's view with a new shape of as many elements.
Tensor view_as(const Tensor& t, const Shape& shape) {
  return Tensor::make_view(t, shape, contiguous_strides(shape), t.offset());
}

// How many images a group holds: as many as have columns of [rows, length] within column_bytes,
// at least one.
int64_t group_size(int64_t n, int64_t rows, int64_t length, DType dtype, int64_t column_bytes) {
  const int64_t per_image = std::max<int64_t>(1, rows * length * static_cast<int64_t>(element_size(dtype)));
  return std::clamp<int64_t>(column_bytes / per_image, 1, std::max<int64_t>(n, 1));
}

void check_conv_operands(std::string_view op, const Tensor& x, const char* x_name, const Tensor& weight,
                         const Window2d& window) {
  check_defined(op, x, x_name);
  check_defined(op, weight, "weight");
  check_same_dtype(op, x, weight);
  check_same_device(op, x, weight);
  MG_CHECK(is_floating(x.dtype()), op, ": dtype ", x.dtype(), " is not supported (needs float32 or float64)");
  MG_CHECK(x.dim() == 4 && weight.dim() == 4, op, ": expected a 4-D ", x_name, " and weight, got ", describe(x),
           " and ", describe(weight));
  MG_CHECK(weight.shape()[2] == window.kh && weight.shape()[3] == window.kw, op, ": weight ", describe(weight),
           " does not match the window's kernel (", window.kh, ",", window.kw, ")");
  check_window(op, window);
}

// W [O,C,kh,kw] -> [C,O,kh,kw] with both kernel axes reversed, for a CPU weight.
Tensor flipped_transposed(const Tensor& weight) {
  const Tensor w = contiguous(weight);
  const int64_t o = w.shape()[0], c = w.shape()[1], kh = w.shape()[2], kw = w.shape()[3];
  Tensor out = Tensor::empty({c, o, kh, kw}, w.dtype(), w.device());
  dispatch_floating(w.dtype(), "conv2d backward", [&]<typename T>() {
    const T* src = w.data_ptr<T>();
    T* dst = out.data_ptr<T>();
    for (int64_t oi = 0; oi < o; ++oi)
      for (int64_t ci = 0; ci < c; ++ci)
        for (int64_t i = 0; i < kh; ++i)
          for (int64_t j = 0; j < kw; ++j)
            dst[((ci * o + oi) * kh + kh - 1 - i) * kw + kw - 1 - j] = src[((oi * c + ci) * kh + i) * kw + j];
  });
  return out;
}

// Checks conv2d's operands; returns the output's shape.
Shape conv2d_output_shape(const Tensor& x, const Tensor& weight, const Tensor& bias, const Window2d& window) {
  check_conv_operands("conv2d", x, "input", weight, window);
  const int64_t n = x.shape()[0], c = x.shape()[1], o = weight.shape()[0];
  MG_CHECK(weight.shape()[1] == c, "conv2d: input ", describe(x), " has ", c, " channels but weight ", describe(weight),
           " expects ", weight.shape()[1]);
  MG_CHECK(!bias.defined() ||
               (bias.dim() == 1 && bias.shape()[0] == o && bias.dtype() == x.dtype() && bias.device() == x.device()),
           "conv2d: bias ", describe(bias), " must be [", o, "] with the input's dtype and device (", describe(x), ")");
  return {n, o, window.out_h(x.shape()[2]), window.out_w(x.shape()[3])};
}

// A 3x3 window of stride 1, padding 1 and dilation 1: the backend may have a faster algorithm
// for it than im2col + GEMM (Backend::conv3x3).
bool unit_3x3(const Window2d& w) {
  return w.kh == 3 && w.kw == 3 && w.sh == 1 && w.sw == 1 && w.ph == 1 && w.pw == 1 && w.dh == 1 && w.dw == 1;
}

// conv2d into out [N,O,oh,ow] (contiguous), operands checked.
void conv2d_into(const Tensor& x, const Tensor& weight, const Tensor& bias, const Window2d& window,
                 int64_t column_bytes, const Tensor& out) {
  if (unit_3x3(window) && backend(out).conv3x3(x, weight, bias, column_bytes, out)) return;
  const int64_t n = x.shape()[0], c = x.shape()[1], o = weight.shape()[0];
  const int64_t rows = c * window.kh * window.kw, length = out.shape()[2] * out.shape()[3];
  const Tensor w = view_as(contiguous(weight), {1, o, rows});
  const int64_t group = group_size(n, rows, length, x.dtype(), column_bytes);
  int64_t begin = 0;
  do {  // at least once, so that im2col validates the geometry of an empty batch too
    const int64_t count = std::min(group, n - begin);
    const Tensor cols = im2col(images(x, begin, count), window, 0.0, "conv2d");
    const Tensor dst = view_as(images(out, begin, count), {count, o, length});
    if (dst.numel() > 0 && rows == 0) {
      backend(dst).fill(dst, 0.0);
    } else if (dst.numel() > 0) {  // [O, rows] @ [rows, L] for each image, the weight broadcast over the group
      backend(dst).matmul(Tensor::make_view(w, {count, o, rows}, {0, rows, 1}, w.offset()), cols, dst);
    }
    // The bias goes on while the group's output is still in cache.
    if (bias.defined() && dst.numel() > 0)
      backend(dst).binary(BinaryOp::Add, dst,
                          Tensor::make_view(bias, {count, o, length}, {0, bias.strides()[0], 0}, bias.offset()), dst);
    begin += group;
  } while (begin < n);
}

void check_conv_input_grad(const Tensor& grad, const Tensor& weight, int64_t height, int64_t width,
                           const Window2d& window) {
  check_conv_operands("conv2d backward", grad, "grad", weight, window);
  const int64_t o = weight.shape()[0], oh = window.out_h(height), ow = window.out_w(width);
  MG_CHECK(grad.shape()[1] == o && grad.shape()[2] == oh && grad.shape()[3] == ow && oh > 0 && ow > 0,
           "conv2d backward: grad ", describe(grad), " is not the output of weight ", describe(weight), " over a ",
           height, "x", width, " input");
}

// conv2d_input_grad into dx [N,C,height,width] (contiguous), operands checked.
void conv2d_input_grad_into(const Tensor& grad, const Tensor& weight, const Window2d& window, int64_t column_bytes,
                            const Tensor& dx) {
  const int64_t n = grad.shape()[0], o = weight.shape()[0], c = weight.shape()[1];
  const int64_t height = dx.shape()[2], width = dx.shape()[3];
  const int64_t oh = window.out_h(height), ow = window.out_w(width);
  const int64_t rows = c * window.kh * window.kw, length = oh * ow;
  if (dx.numel() == 0) return;
  if (o == 0) {
    backend(dx).fill(dx, 0.0);
    return;
  }
  // A stride-1 convolution that keeps the image's size has as input gradient the convolution of
  // grad with the weight transposed and flipped, over the same window: im2col of grad (one
  // shifted copy per row) and a GEMM, where W^T grad followed by col2im would scatter-add every
  // column back.
  if (grad.device().is_cpu() && window.sh == 1 && window.sw == 1 && oh == height && ow == width) {
    conv2d_into(grad, flipped_transposed(weight), Tensor(), window, column_bytes, dx);
    return;
  }
  const Tensor w = view_as(contiguous(weight), {1, o, rows});
  const Tensor g = view_as(contiguous(grad), {n, o, length});
  const int64_t group = group_size(n, rows, length, grad.dtype(), column_bytes);
  for (int64_t begin = 0; begin < n; begin += group) {
    const int64_t count = std::min(group, n - begin);
    // W^T [rows, O] @ g [O, L] for each image: the columns' gradient, folded back onto the image.
    const Tensor cols = Tensor::empty({count, rows, length}, grad.dtype(), grad.device());
    backend(cols).matmul(Tensor::make_view(w, {count, rows, o}, {0, 1, rows}, w.offset()), images(g, begin, count),
                         cols);
    backend(dx).col2im(cols, window, images(dx, begin, count));
  }
}

// The task'th slice of a [T, ...] tensor: a view.
Tensor task_slice(const Tensor& t, int64_t task) {
  const Shape shape(t.shape().begin() + 1, t.shape().end());
  const Shape strides(t.strides().begin() + 1, t.strides().end());
  return Tensor::make_view(t, shape, strides, t.offset() + task * t.strides()[0]);
}

void check_per_task(std::string_view op, const Tensor& a, const char* a_name, int64_t a_dims, const Tensor& b,
                    const char* b_name, int64_t b_dims) {
  check_defined(op, a, a_name);
  check_defined(op, b, b_name);
  MG_CHECK(a.dim() == a_dims && b.dim() == b_dims && a.shape()[0] == b.shape()[0], op, ": per-task ", a_name, " ",
           describe(a), " and ", b_name, " ", describe(b), " must be ", a_dims, "-D and ", b_dims,
           "-D with the same number of tasks");
  MG_CHECK(a.shape()[0] >= 1, op, ": per-task ", a_name, " ", describe(a), " holds no task");
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Window2d& window, int64_t column_bytes) {
  Tensor out = Tensor::empty(conv2d_output_shape(x, weight, bias, window), x.dtype(), x.device());
  conv2d_into(x, weight, bias, window, column_bytes, out);
  return out;
}

Tensor conv2d_input_grad(const Tensor& grad, const Tensor& weight, int64_t height, int64_t width,
                         const Window2d& window, int64_t column_bytes) {
  check_conv_input_grad(grad, weight, height, width, window);
  Tensor dx = Tensor::empty({grad.shape()[0], weight.shape()[1], height, width}, grad.dtype(), grad.device());
  conv2d_input_grad_into(grad, weight, window, column_bytes, dx);
  return dx;
}

Tensor conv2d_weight_grad(const Tensor& grad, const Tensor& x, const Window2d& window, int64_t column_bytes) {
  check_defined("conv2d backward", grad, "grad");
  check_defined("conv2d backward", x, "input");
  check_same_dtype("conv2d backward", grad, x);
  check_same_device("conv2d backward", grad, x);
  MG_CHECK(grad.dim() == 4 && x.dim() == 4 && grad.shape()[0] == x.shape()[0], "conv2d backward: grad ", describe(grad),
           " and input ", describe(x), " must be 4-D with the same number of images");
  const int64_t n = x.shape()[0], c = x.shape()[1], o = grad.shape()[1];
  const int64_t rows = c * window.kh * window.kw, length = grad.shape()[2] * grad.shape()[3];
  const Shape weight_shape{o, c, window.kh, window.kw};
  if (n == 0 || length == 0 || o * rows == 0) {
    Tensor zero = Tensor::empty(weight_shape, x.dtype(), x.device());
    if (zero.numel() > 0) backend(zero).fill(zero, 0.0);
    return zero;
  }
  if (unit_3x3(window) && grad.shape()[2] == x.shape()[2] && grad.shape()[3] == x.shape()[3])
    if (Tensor dweight = backend(x).conv3x3_weight_grad(grad, x, column_bytes); dweight.defined()) return dweight;
  const Tensor g = view_as(contiguous(grad), {n, o, length});
  const int64_t group = group_size(n, rows, length, x.dtype(), column_bytes);
  Tensor sum;
  for (int64_t begin = 0; begin < n; begin += group) {
    const int64_t count = std::min(group, n - begin);
    const Tensor cols = im2col(images(x, begin, count), window, 0.0, "conv2d backward");  // [count, rows, L]
    MG_CHECK(cols.shape()[2] == length, "conv2d backward: grad ", describe(grad), " is not the output of input ",
             describe(x), " under this window");
    const Tensor cols_t = Tensor::make_view(cols, {count, length, rows}, {rows * length, 1, length}, cols.offset());
    // g [O, L] @ cols^T [L, rows] summed over the group's images in one GEMM, then over the groups.
    const Tensor part = Tensor::empty({1, o, rows}, x.dtype(), x.device());
    backend(part).matmul_sum(images(g, begin, count), cols_t, part);
    sum = sum.defined() ? binary(BinaryOp::Add, sum, part) : part;
  }
  return view_as(contiguous(sum), weight_shape);
}

Tensor conv2d_per_task(const Tensor& x, const Tensor& weight, const Tensor& bias, const Window2d& window,
                       int64_t column_bytes) {
  check_per_task("conv2d", x, "input", 5, weight, "weight", 5);
  if (bias.defined()) check_per_task("conv2d", bias, "bias", 2, weight, "weight", 5);
  const int64_t tasks = x.shape()[0];
  Shape shape = conv2d_output_shape(task_slice(x, 0), task_slice(weight, 0),
                                    bias.defined() ? task_slice(bias, 0) : Tensor(), window);
  shape.insert(shape.begin(), tasks);
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  for (int64_t t = 0; t < tasks; ++t)
    conv2d_into(task_slice(x, t), task_slice(weight, t), bias.defined() ? task_slice(bias, t) : Tensor(), window,
                column_bytes, task_slice(out, t));
  return out;
}

Tensor conv2d_per_task_input_grad(const Tensor& grad, const Tensor& weight, int64_t height, int64_t width,
                                  const Window2d& window, int64_t column_bytes) {
  check_per_task("conv2d backward", grad, "grad", 5, weight, "weight", 5);
  const int64_t tasks = grad.shape()[0];
  check_conv_input_grad(task_slice(grad, 0), task_slice(weight, 0), height, width, window);
  Tensor dx = Tensor::empty({tasks, grad.shape()[1], weight.shape()[2], height, width}, grad.dtype(), grad.device());
  for (int64_t t = 0; t < tasks; ++t)
    conv2d_input_grad_into(task_slice(grad, t), task_slice(weight, t), window, column_bytes, task_slice(dx, t));
  return dx;
}

Tensor conv2d_per_task_weight_grad(const Tensor& grad, const Tensor& x, const Window2d& window, int64_t column_bytes) {
  check_per_task("conv2d backward", grad, "grad", 5, x, "input", 5);
  const int64_t tasks = grad.shape()[0];
  Tensor dw = Tensor::empty({tasks, grad.shape()[2], x.shape()[2], window.kh, window.kw}, x.dtype(), x.device());
  for (int64_t t = 0; t < tasks; ++t) {
    const Tensor part = conv2d_weight_grad(task_slice(grad, t), task_slice(x, t), window, column_bytes);
    const Tensor dst = task_slice(dw, t);
    backend(dst).copy(part, dst);
  }
  return dw;
}

}  // namespace mg::kernels
