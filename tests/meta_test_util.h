#pragma once
// Helpers shared by the meta-learning tests: float64 regression tasks, fresh parameter leaves,
// central differences over every parameter element, and a relative error over whole gradients.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "../autograd/ops.h"
#include "../meta/task.h"
#include "../nn/tensor_dict.h"
#include "../tensor/creation.h"

namespace mg::testing {

inline meta::Task regression_task(uint64_t seed, int64_t in, int64_t n, DType dtype = kFloat64) {
  Generator gen(seed);
  meta::Task t;
  t.support_x = randn({n, in}, dtype, kCPU, &gen);
  t.support_y = randn({n, 1}, dtype, kCPU, &gen);
  t.query_x = randn({n, in}, dtype, kCPU, &gen);
  t.query_y = randn({n, 1}, dtype, kCPU, &gen);
  return t;
}

inline nn::TensorDict fresh_leaves(const nn::TensorDict& params) {
  return params.map([](const Tensor& p) { return p.detach().clone().requires_grad_(); });
}

// Central differences of f over every element of every entry of params.
inline std::vector<double> finite_differences(const nn::TensorDict& params,
                                              const std::function<double(const nn::TensorDict&)>& f,
                                              double eps = 1e-6) {
  std::vector<double> out;
  for (const auto& [name, p] : params) {
    for (int64_t j = 0; j < p.numel(); ++j) {
      auto perturbed = [&](double delta) {
        nn::TensorDict copy = fresh_leaves(params);
        copy.at(name).detach().reshape({-1}).narrow(0, j, 1).add_(delta);
        return f(copy);
      };
      out.push_back((perturbed(eps) - perturbed(-eps)) / (2 * eps));
    }
  }
  return out;
}

inline std::vector<double> flatten(const TensorList& tensors) {
  std::vector<double> out;
  for (const Tensor& t : tensors)
    for (double v : t.to_vector()) out.push_back(v);
  return out;
}

// The largest entry of |a - b|, relative to the largest entry of |b|.
inline double max_relative_error(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double scale = 0, worst = 0;
  for (double v : b) scale = std::max(scale, std::abs(v));
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / std::max(scale, 1e-12));
  return worst;
}

inline bool all_finite(const std::vector<double>& values) {
  return std::all_of(values.begin(), values.end(), [](double v) { return std::isfinite(v); });
}

}  // namespace mg::testing
