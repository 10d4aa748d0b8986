#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "../tensor/creation.h"
#include "functional.h"
#include "sequential.h"

namespace mg::nn {

struct MLPOptions {
  std::vector<int64_t> sizes{};  // {in, hidden..., out}: at least two
  functional::Activation activation = functional::Activation::ReLU;
  double dropout = 0.0;  // after each hidden activation, when > 0
  bool bias = true;
};

// Linear, activation, [Dropout], ..., Linear (no activation after the last), as a Sequential
// whose children are numbered like the equivalent torch.nn.Sequential, so its state dict loads.
std::shared_ptr<Sequential> make_mlp(const MLPOptions& options, Generator* gen = nullptr);

}  // namespace mg::nn
