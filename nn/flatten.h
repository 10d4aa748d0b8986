#pragma once
#include <cstdint>

#include "module.h"

namespace mg::nn {

// Merges dims start_dim..end_dim (negative counts from the end) into one, as torch.nn.Flatten.
// Having no weights, it cannot tell a task-batched input [T, N, ...] (nn/functional.h) from an
// ordinary one: Flatten(2) keeps both leading dims of such an input.
class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1) : start_dim_(start_dim), end_dim_(end_dim) {}
  std::string type_name() const override { return "Flatten"; }
  using Module::forward;
  Tensor forward(const Params& params, const Tensor& x) override;

 private:
  int64_t start_dim_;
  int64_t end_dim_;
};

}  // namespace mg::nn
