// Front ends of the 2-D window kernels (im2col / col2im, max pooling), declared in kernels.h.
//
// A translation unit of their own, not kernels.cpp: with these in that file, g++ 12 at -O3
// inlines differently there and raises a false -Wrestrict on std::string code in reduce()
// (GCC bug 105329), which -Werror turns into a failed release build.
#include "kernels.h"

#include <string>

namespace mg::kernels {
namespace {

Backend& backend(const Tensor& t) { return backend_for(t.device()); }

std::string window_str(const Window2d& w) {
  return detail::concat_message("kernel (", w.kh, ",", w.kw, "), stride (", w.sh, ",", w.sw, "), padding (", w.ph, ",",
                                w.pw, "), dilation (", w.dh, ",", w.dw, ")");
}

// Throws unless the dilated kernel fits in the padded height x width plane.
void check_window_fits(std::string_view op, const Window2d& w, int64_t height, int64_t width,
                       const std::string& what) {
  const int64_t span_h = w.dh * (w.kh - 1) + 1, span_w = w.dw * (w.kw - 1) + 1;
  MG_CHECK(span_h <= height + 2 * w.ph && span_w <= width + 2 * w.pw, op, ": the kernel spans ", span_h, "x", span_w,
           " but the padded input is only ", height + 2 * w.ph, "x", width + 2 * w.pw, " (", what, "; ",
           window_str(w), ")");
}

}  // namespace

void check_window(std::string_view op, const Window2d& w) {
  MG_CHECK(w.kh >= 1 && w.kw >= 1 && w.sh >= 1 && w.sw >= 1 && w.dh >= 1 && w.dw >= 1 && w.ph >= 0 && w.pw >= 0, op,
           ": kernel, stride and dilation must be >= 1 and padding >= 0, got ", window_str(w));
  // Far beyond any real image; keeps the size arithmetic below from overflowing.
  constexpr int64_t limit = int64_t{1} << 24;
  MG_CHECK(w.kh <= limit && w.kw <= limit && w.sh <= limit && w.sw <= limit && w.dh <= limit && w.dw <= limit &&
               w.ph <= limit && w.pw <= limit,
           op, ": window parameters are implausibly large: ", window_str(w));
}

Tensor im2col(const Tensor& x, const Window2d& window, double pad_value, std::string_view op) {
  check_defined(op, x);
  MG_CHECK(is_floating(x.dtype()), op, ": dtype ", x.dtype(), " is not supported (needs float32 or float64); input ",
           describe(x));
  MG_CHECK(x.dim() == 4, op, ": expected a 4-D [N,C,H,W] input, got ", describe(x));
  check_window(op, window);
  const int64_t height = x.shape()[2], width = x.shape()[3];
  check_window_fits(op, window, height, width, "input " + describe(x));
  const int64_t oh = window.out_h(height), ow = window.out_w(width);
  Tensor cols = Tensor::empty({x.shape()[0], x.shape()[1] * window.kh * window.kw, oh * ow}, x.dtype(), x.device());
  if (cols.numel() > 0) backend(cols).im2col(x, window, pad_value, cols);
  return cols;
}

Tensor col2im(const Tensor& cols, int64_t height, int64_t width, const Window2d& window, std::string_view op) {
  check_defined(op, cols);
  MG_CHECK(is_floating(cols.dtype()), op, ": dtype ", cols.dtype(),
           " is not supported (needs float32 or float64); input ", describe(cols));
  MG_CHECK(cols.dim() == 3, op, ": expected a 3-D [N, C*kh*kw, L] input, got ", describe(cols));
  MG_CHECK(height >= 1 && width >= 1, op, ": output size must be positive, got ", height, "x", width);
  check_window(op, window);
  const int64_t k = window.kh * window.kw;
  MG_CHECK(cols.shape()[1] % k == 0, op, ": input ", describe(cols), " has ", cols.shape()[1],
           " rows, which is not a multiple of the kernel's ", window.kh, "x", window.kw, " = ", k);
  check_window_fits(op, window, height, width, detail::concat_message("output size ", height, "x", width));
  const int64_t oh = window.out_h(height), ow = window.out_w(width);
  MG_CHECK(cols.shape()[2] == oh * ow, op, ": input ", describe(cols), " has ", cols.shape()[2],
           " columns but an output of ", height, "x", width, " with ", window_str(window), " has ", oh, "x", ow, " = ",
           oh * ow, " window positions");
  Tensor out = Tensor::empty({cols.shape()[0], cols.shape()[1] / k, height, width}, cols.dtype(), cols.device());
  if (out.numel() > 0) backend(out).col2im(cols, window, out);
  return out;
}

std::pair<Tensor, Tensor> max_pool2d(const Tensor& x, const Window2d& window, std::string_view op) {
  check_defined(op, x);
  MG_CHECK(is_floating(x.dtype()), op, ": dtype ", x.dtype(), " is not supported (needs float32 or float64); input ",
           describe(x));
  MG_CHECK(x.dim() == 4, op, ": expected a 4-D [N,C,H,W] input, got ", describe(x));
  check_window(op, window);
  MG_CHECK(2 * window.ph <= window.kh && 2 * window.pw <= window.kw, op, ": padding (", window.ph, ",", window.pw,
           ") must be at most half the kernel (", window.kh, ",", window.kw, ")");
  const int64_t height = x.shape()[2], width = x.shape()[3];
  check_window_fits(op, window, height, width, "input " + describe(x));
  const Shape shape{x.shape()[0], x.shape()[1], window.out_h(height), window.out_w(width)};
  std::pair<Tensor, Tensor> r{Tensor::empty(shape, x.dtype(), x.device()), Tensor::empty(shape, kInt64, x.device())};
  if (r.first.numel() > 0) backend(x).max_pool2d(contiguous(x), window, r.first, r.second);
  return r;
}

Tensor max_unpool2d(const Tensor& x, const Tensor& indices, int64_t height, int64_t width, bool check_range,
                    std::string_view op) {
  check_defined(op, x);
  check_defined(op, indices, "indices");
  MG_CHECK(is_floating(x.dtype()), op, ": dtype ", x.dtype(), " is not supported (needs float32 or float64); input ",
           describe(x));
  MG_CHECK(x.dim() == 4, op, ": expected a 4-D [N,C,h,w] input, got ", describe(x));
  MG_CHECK(indices.dtype() == kInt64 && indices.shape() == x.shape(), op,
           ": indices must be int64 of the input's shape ", shape_str(x.shape()), ", got ", describe(indices));
  check_same_device(op, x, indices);
  MG_CHECK(height >= 1 && width >= 1, op, ": output size must be positive, got ", height, "x", width);
  const int64_t area = height * width;
  const Tensor where = contiguous(indices);
  // While a graph is captured nothing is checked (first_index_outside cannot read the host): the
  // CUDA kernel then places nothing for a position outside the plane.
  if (check_range) {
    const std::optional<IndexOutside> bad = first_index_outside(where, area);
    MG_CHECK(!bad, op, ": index ", bad->value, " at flat position ", bad->position, " is outside the ", height, "x",
             width, " output plane");
  }
  Tensor out = Tensor::empty({x.shape()[0], x.shape()[1], height, width}, x.dtype(), x.device());
  if (out.numel() > 0) backend(out).max_unpool2d(contiguous(x), where, out);
  return out;
}

}  // namespace mg::kernels
