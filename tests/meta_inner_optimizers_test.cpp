// Inner-loop optimizers (InnerLoopOptions::optimizer): Momentum and Adam follow their formulas,
// and second-order MAML through them equals finite differences, also where inner gradient
// entries are exactly zero (dead ReLU units, an input feature the support set never uses),
// which is where Adam's textbook sqrt(v) + eps denominator turns the meta-gradient into NaN.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "../autograd/grad.h"
#include "../autograd/grad_mode.h"
#include "../autograd/ops.h"
#include "../meta/maml.h"
#include "../nn/losses.h"
#include "../nn/mlp.h"
#include "check_error.h"
#include "meta_test_util.h"

using namespace mg;
using namespace mg::testing;
using mg::nn::TensorDict;

namespace {

Tensor mse(const Tensor& out, const Tensor& y) { return nn::mse_loss(out, y); }

// y = x * w elementwise over features: a problem whose gradient is written down by hand.
class Scale : public nn::Module {
 public:
  Scale() { register_parameter("w", tensor({0.5, -1.0}, kFloat64).requires_grad_()); }
  std::string type_name() const override { return "Scale"; }
  using nn::Module::forward;
  Tensor forward(const nn::Params& params, const Tensor& x) override { return x * params["w"]; }
};

// A 3-8-1 ReLU MLP where hidden units 0, 3 and 6 are dead on every input (their bias is far
// below what the weights can reach), and a support set whose feature 2 is always 0: the
// support gradients of those units' weights, and of column 2 of the first layer, are exactly 0.
struct ZeroGradientProblem {
  std::shared_ptr<nn::Sequential> model;
  meta::Task task;
  TensorDict params;

  ZeroGradientProblem() {
    Generator gen(80);
    model = nn::make_mlp({.sizes = {3, 8, 1}}, &gen);
    model->to(kFloat64);
    {
      NoGradGuard no_grad;
      Tensor bias = model->named_parameters().at("0.bias");
      for (int64_t unit : {0, 3, 6}) bias.narrow(0, unit, 1).fill_(-50.0);
    }
    task = regression_task(81, 3, 10);
    NoGradGuard no_grad;
    task.support_x.narrow(1, 2, 1).zero_();
    params = fresh_leaves(model->named_parameters());
  }

  // How many support-gradient entries are exactly zero at the initial parameters.
  int64_t zero_gradient_entries() const {
    Tensor loss = mse(model->forward(nn::Params(params), task.support_x), task.support_y);
    int64_t zeros = 0;
    for (double v : flatten(grad({loss}, params.values()))) zeros += v == 0.0;
    return zeros;
  }
};

struct FdResult {
  double error;
  bool finite;
};

FdResult meta_gradient_vs_finite_differences(const ZeroGradientProblem& problem, const meta::MamlOptions& options) {
  auto query_loss = [&](const TensorDict& p) {
    return meta::maml_task_loss(*problem.model, p, problem.task, mse, options).query_loss;
  };
  const std::vector<double> analytic = flatten(grad({query_loss(problem.params)}, problem.params.values()));
  const std::vector<double> numeric =
      finite_differences(problem.params, [&](const TensorDict& p) { return query_loss(p).item(); });
  return {max_relative_error(analytic, numeric), all_finite(analytic)};
}

}  // namespace

TEST_SUITE("meta.inner_optimizers") {
  TEST_CASE("Momentum and Adam follow their formulas") {
    Scale model;
    meta::Task task;
    task.support_x = tensor({1.0, 0.0, 2.0, 0.0, -1.0, 0.0}, {3, 2}, kFloat64);  // feature 1 never seen
    task.support_y = tensor({0.3, 0.1, 1.1, 0.2, -0.4, 0.5}, {3, 2}, kFloat64);
    const std::vector<double> x = task.support_x.to_vector(), y = task.support_y.to_vector();
    // d/dw_j of mean((x w - y)^2) over all 6 entries.
    auto gradient = [&](const std::vector<double>& w) {
      std::vector<double> g(2, 0.0);
      for (int n = 0; n < 3; ++n)
        for (int j = 0; j < 2; ++j) g[j] += 2.0 * (x[2 * n + j] * w[j] - y[2 * n + j]) * x[2 * n + j] / 6.0;
      return g;
    };
    const double lr = 0.1, mu = 0.8, b1 = 0.9, b2 = 0.99, eps = 1e-8;
    for (meta::InnerOptimizer optimizer : {meta::InnerOptimizer::Momentum, meta::InnerOptimizer::Adam}) {
      meta::InnerLoopOptions options{.steps = 3, .lr = lr};
      options.optimizer = optimizer;
      options.momentum = mu;
      options.beta1 = b1;
      options.beta2 = b2;
      options.eps = eps;
      const meta::Adaptation a =
          meta::adapt(model, model.named_parameters(), task.support_x, task.support_y, mse, options);
      std::vector<double> w = {0.5, -1.0}, m(2, 0.0), v(2, 0.0);
      for (int t = 1; t <= 3; ++t) {
        const std::vector<double> g = gradient(w);
        for (int j = 0; j < 2; ++j) {
          if (optimizer == meta::InnerOptimizer::Momentum) {
            m[j] = mu * m[j] + g[j];
            w[j] -= lr * m[j];
          } else {
            m[j] = b1 * m[j] + (1 - b1) * g[j];
            v[j] = b2 * v[j] + (1 - b2) * g[j] * g[j];
            w[j] -= lr * (m[j] / (1 - std::pow(b1, t))) / std::sqrt(v[j] / (1 - std::pow(b2, t)) + eps * eps);
          }
        }
      }
      const std::vector<double> got = a.params.at("w").to_vector();
      CHECK(std::abs(got[0] - w[0]) < 1e-14);
      CHECK(got[1] == -1.0);  // zero gradient: no step, for Adam too
      CHECK(got[0] != 0.5);
    }
  }

  TEST_CASE("the textbook Adam denominator makes this meta-gradient NaN") {
    // Why inner Adam uses sqrt(v_hat + eps^2): sqrt's derivative at 0 is infinite, and a
    // second-order pass multiplies it by the zero gradient of a dead unit.
    ZeroGradientProblem problem;
    const Tensor support_loss =
        mse(problem.model->forward(nn::Params(problem.params), problem.task.support_x), problem.task.support_y);
    TensorList g = grad({support_loss}, problem.params.values(), {}, {.create_graph = true});
    TensorDict adapted;
    std::size_t i = 0;
    for (const auto& [name, p] : problem.params) {
      const Tensor m = g[i] * 0.1, v = square(g[i]) * 0.001;  // one step, beta1 = 0.9, beta2 = 0.999
      adapted.insert(name, p - (m / 0.1) / (sqrt(v / 0.001) + 1e-8) * 0.01);
      ++i;
    }
    Tensor query_loss = mse(problem.model->forward(nn::Params(adapted), problem.task.query_x), problem.task.query_y);
    CHECK_FALSE(all_finite(flatten(grad({query_loss}, problem.params.values()))));
  }

  TEST_CASE("second-order MAML through inner Adam and Momentum equals finite differences at exact-zero gradients") {
    ZeroGradientProblem problem;
    const int64_t zeros = problem.zero_gradient_entries();
    MESSAGE("support-gradient entries exactly zero: ", zeros);
    REQUIRE(zeros >= 12);
    meta::MamlOptions options;
    SUBCASE("Adam") { options.inner = {.steps = 3, .lr = 0.01, .optimizer = meta::InnerOptimizer::Adam}; }
    SUBCASE("Momentum") {
      options.inner = {.steps = 3, .lr = 0.05, .optimizer = meta::InnerOptimizer::Momentum, .momentum = 0.9};
    }
    const FdResult stored = meta_gradient_vs_finite_differences(problem, options);
    options.inner.checkpoint = true;
    const FdResult checkpointed = meta_gradient_vs_finite_differences(problem, options);
    const std::string name = options.inner.optimizer == meta::InnerOptimizer::Adam ? "Adam" : "Momentum";
    MESSAGE(name, ", 3 steps: max relative error vs finite differences ", stored.error, " (checkpointed ",
            checkpointed.error, ")");
    CHECK(stored.finite);
    CHECK(stored.error < 1e-6);
    CHECK(checkpointed.finite);
    CHECK(checkpointed.error < 1e-6);
  }

  TEST_CASE("Meta-SGD rates scale Adam's steps and get their gradients") {
    ZeroGradientProblem problem;
    meta::MamlOptions options;
    options.inner = {
        .steps = 2, .lr = 0.01, .learned_lr = meta::LearnedLr::PerElement, .optimizer = meta::InnerOptimizer::Adam};
    const TensorDict lrs = meta::make_learned_lrs(problem.params, options.inner);
    auto query_loss = [&](const TensorDict& rates) {
      return meta::maml_task_loss(*problem.model, problem.params, problem.task, mse, options, &rates).query_loss;
    };
    const std::vector<double> analytic = flatten(grad({query_loss(lrs)}, lrs.values()));
    const std::vector<double> numeric =
        finite_differences(lrs, [&](const TensorDict& r) { return query_loss(r).item(); });
    CHECK(all_finite(analytic));
    CHECK(max_relative_error(analytic, numeric) < 1e-6);
  }

  TEST_CASE("optimizer settings out of range are errors") {
    Scale model;
    const Tensor x = ones({2, 2}, kFloat64), y = zeros({2, 2}, kFloat64);
    meta::InnerLoopOptions options{.steps = 1, .optimizer = meta::InnerOptimizer::Adam};
    options.beta1 = 1.0;
    CHECK_MG_ERROR(meta::adapt(model, model.named_parameters(), x, y, mse, options), "adapt", "betas", "[0, 1)");
    options.beta1 = 0.9;
    options.eps = 0.0;
    CHECK_MG_ERROR(meta::adapt(model, model.named_parameters(), x, y, mse, options), "adapt", "eps");
    options = {.steps = 1, .optimizer = meta::InnerOptimizer::Momentum, .momentum = -0.5};
    CHECK_MG_ERROR(meta::adapt(model, model.named_parameters(), x, y, mse, options), "adapt", "momentum");
  }
}
