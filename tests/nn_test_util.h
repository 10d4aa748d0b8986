#pragma once
// Helpers shared by the nn_*_test suites: gradcheck/gradgradcheck through a module's forward
// with its parameters passed as a TensorDict (the fast-weights path), and tensor comparison.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "../autograd/grad.h"
#include "../autograd/grad_mode.h"
#include "../autograd/gradcheck.h"
#include "../autograd/ops.h"
#include "../nn/module.h"
#include "../tensor/creation.h"

namespace mg::nn::test {

inline Tensor randn64(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  return randn(shape, kFloat64, kCPU, &gen);
}

inline Tensor values(const std::vector<double>& v, const Shape& shape, DType dtype = kFloat32) {
  return tensor(v, shape, dtype);
}

// f(params, inputs) -> output; inputs[0] is usually the layer's input.
using ModuleFn = std::function<Tensor(const Params&, const TensorList&)>;

// Which parameters the checks perturb: their cost grows with the square of that number.
inline bool vectors_only(const std::string&, const Tensor& t) { return t.dim() <= 1; }

// gradcheck, then gradgradcheck, of f with respect to the float64 inputs that require grad and
// to the module's parameters (cloned, so the module is untouched).
enum class Coverage {
  All,      // every parameter
  Vectors,  // biases and norm parameters (the weight matrices' first derivatives are compared with
            // PyTorch's in nn_fixtures_test, and their second derivatives checked in the
            // Linear/MultiheadAttention cases and the transformer_maml example)
  Inputs,   // the inputs only (for stacks of layers checked one by one elsewhere)
};

inline void check_module_grads(const Module& module, const TensorList& inputs, const ModuleFn& f,
                               Coverage coverage = Coverage::All, GradcheckOptions options = {}) {
  const TensorDict params = module.named_parameters();
  const std::vector<std::string> names = params.keys();
  TensorList all = inputs, selected = inputs;
  for (const auto& [name, t] : params) {
    REQUIRE(t.dtype() == kFloat64);
    Tensor first = t.detach().clone(), second = t.detach().clone();
    const bool checked = coverage == Coverage::All || (coverage == Coverage::Vectors && vectors_only(name, t));
    if (checked) first.requires_grad_(), second.requires_grad_();
    all.push_back(first);
    selected.push_back(second);
  }
  const std::size_t n_inputs = inputs.size();
  TensorFunction fn = [&](const TensorList& args) {
    TensorDict dict;
    for (std::size_t i = 0; i < names.size(); ++i) dict.insert(names[i], args[n_inputs + i]);
    TensorList in(args.begin(), args.begin() + static_cast<std::ptrdiff_t>(n_inputs));
    return f(Params(dict), in);
  };
  GradcheckResult first = gradcheck(fn, all, options);
  INFO(first.message);
  CHECK(first.ok);
  {
    GradcheckResult second = gradgradcheck(fn, selected, options);
    INFO(second.message);
    CHECK(second.ok);
  }
}

// forward(Params(dict), x) with the module's own parameters as a dict equals forward(x), and a
// set of fast weights with history passes gradients back to the tensors it was made from.
inline void check_fast_weights(Module& module, const std::function<Tensor(const Params&)>& f) {
  Tensor own = f(Params(module));
  const TensorDict params = module.named_parameters();
  Tensor same = f(Params(params));
  CHECK(own.shape() == same.shape());
  CHECK(own.detach().values_as_double() == same.detach().values_as_double());

  // One differentiable SGD step: fast = w - 0.1 * dL/dw, then d(loss(fast))/dw.
  TensorList ws = params.values();
  Tensor inner = sum(square(f(Params(params))));
  TensorList gs = grad({inner}, ws, {}, {.create_graph = true, .allow_unused = true});
  TensorDict fast;
  std::size_t i = 0;
  for (const auto& [name, w] : params) {
    fast.insert(name, gs[i].defined() ? w - gs[i] * 0.1 : w);
    ++i;
  }
  Tensor outer = sum(square(f(Params(fast))));
  TensorList meta = grad({outer}, ws, {}, {.allow_unused = true});
  i = 0;
  for (const auto& [name, w] : params) {
    INFO("parameter ", name);
    REQUIRE(meta[i].defined());
    CHECK(meta[i].shape() == w.shape());
    for (double v : meta[i].values_as_double()) CHECK(std::isfinite(v));
    ++i;
  }
}

inline double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.values_as_double()) m = std::max(m, std::abs(v));
  return m;
}

// |actual - expected| <= atol + rtol * |expected| elementwise; reports the worst element.
inline void check_close(const Tensor& actual, const Tensor& expected, double rtol, double atol,
                        const std::string& what) {
  INFO(what);
  REQUIRE(actual.defined());
  REQUIRE(expected.defined());
  REQUIRE(shape_str(actual.shape()) == shape_str(expected.shape()));
  const std::vector<double> a = actual.detach().values_as_double(), b = expected.detach().values_as_double();
  bool ok = true;
  std::size_t worst = 0;
  double worst_excess = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double excess = std::abs(a[i] - b[i]) - (atol + rtol * std::abs(b[i]));
    if (excess <= 0) continue;
    if (ok || excess > worst_excess || std::isnan(excess))
      worst = i, worst_excess = std::isnan(excess) ? INFINITY : excess;
    ok = false;
  }
  if (!ok)
    FAIL_CHECK("element ", worst, " of ", a.size(), ": ", a[worst], " vs expected ", b[worst], " (|diff| ",
               std::abs(a[worst] - b[worst]), ")");
}

// The largest |actual - expected| / |expected| over elements with |expected| > floor.
inline double max_rel_error(const Tensor& actual, const Tensor& expected, double floor) {
  const std::vector<double> a = actual.detach().values_as_double(), b = expected.detach().values_as_double();
  double worst = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i)
    worst = std::max(worst, std::abs(a[i] - b[i]) / std::max(std::abs(b[i]), floor));
  return worst;
}

}  // namespace mg::nn::test
