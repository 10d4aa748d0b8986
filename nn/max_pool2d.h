#pragma once
#include <cstdint>

#include "../autograd/ops.h"
#include "module.h"

namespace mg::nn {

// Max pooling over NCHW input, as PyTorch's MaxPool2d (ceil_mode off): stride defaults to the
// kernel size; padding, at most half the kernel, never wins a window. No parameters.
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(Size2d kernel_size) : MaxPool2d(kernel_size, kernel_size) {}
  MaxPool2d(Size2d kernel_size, Size2d stride, Size2d padding = 0);
  std::string type_name() const override { return "MaxPool2d"; }
  using Module::forward;
  Tensor forward(const Params& params, const Tensor& x) override;

  Size2d kernel_size() const { return kernel_; }
  Size2d stride() const { return stride_; }
  Size2d padding() const { return padding_; }

 private:
  Size2d kernel_;
  Size2d stride_;
  Size2d padding_;
};

}  // namespace mg::nn
