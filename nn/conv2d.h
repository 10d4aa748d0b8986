#pragma once
#include <cstdint>

#include "../autograd/ops.h"
#include "../tensor/creation.h"
#include "module.h"

namespace mg::nn {

// 2-D convolution (cross-correlation, as PyTorch) over NCHW input, with PyTorch's names and
// init: weight [out, in, kh, kw] ~ kaiming_uniform(a = sqrt(5)), i.e. U(-1/sqrt(fan_in),
// 1/sqrt(fan_in)) with fan_in = in * kh * kw, and bias [out] ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, Size2d kernel_size, Size2d stride = 1, Size2d padding = 0,
         bool bias = true, Generator* gen = nullptr);
  std::string type_name() const override { return "Conv2d"; }
  using Module::forward;
  // Reads params["weight"] and, when the layer has a bias, params["bias"].
  Tensor forward(const Params& params, const Tensor& x) override;
  void reset_parameters(Generator* gen = nullptr);

  int64_t in_channels() const { return in_channels_; }
  int64_t out_channels() const { return out_channels_; }
  Size2d kernel_size() const { return kernel_; }
  Size2d stride() const { return stride_; }
  Size2d padding() const { return padding_; }

 private:
  int64_t in_channels_;
  int64_t out_channels_;
  Size2d kernel_;
  Size2d stride_;
  Size2d padding_;
  bool has_bias_;
};

}  // namespace mg::nn
