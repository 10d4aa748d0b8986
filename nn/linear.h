#pragma once
#include <cstdint>

#include "../tensor/creation.h"
#include "module.h"

namespace mg::nn {

// y = x W^T + b with weight [out, in] and bias [out], PyTorch's names and init:
// W ~ kaiming_uniform(a = sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)), and b ~ U(-1/sqrt(in), 1/sqrt(in)).
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Generator* gen = nullptr);
  std::string type_name() const override { return "Linear"; }
  using Module::forward;
  Tensor forward(const Params& params, const Tensor& x) override;
  void reset_parameters(Generator* gen = nullptr);

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  bool has_bias() const { return has_bias_; }

 private:
  int64_t in_features_;
  int64_t out_features_;
  bool has_bias_;
};

}  // namespace mg::nn
