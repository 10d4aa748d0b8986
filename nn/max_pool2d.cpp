#include "max_pool2d.h"

#include "functional_conv.h"

namespace mg::nn {

MaxPool2d::MaxPool2d(Size2d kernel_size, Size2d stride, Size2d padding)
    : kernel_(kernel_size), stride_(stride), padding_(padding) {
  MG_CHECK(kernel_.h > 0 && kernel_.w > 0 && stride_.h > 0 && stride_.w > 0,
           "MaxPool2d: kernel size and stride must be positive, got kernel (", kernel_.h, ",", kernel_.w,
           "), stride (", stride_.h, ",", stride_.w, ")");
  MG_CHECK(padding_.h >= 0 && padding_.w >= 0 && 2 * padding_.h <= kernel_.h && 2 * padding_.w <= kernel_.w,
           "MaxPool2d: padding (", padding_.h, ",", padding_.w, ") must be non-negative and at most half the kernel (",
           kernel_.h, ",", kernel_.w, ")");
}

Tensor MaxPool2d::forward(const Params&, const Tensor& x) {
  return functional::over_task_images(
      x, [&](const Tensor& images) { return functional::max_pool2d(images, kernel_, stride_, padding_); });
}

}  // namespace mg::nn
