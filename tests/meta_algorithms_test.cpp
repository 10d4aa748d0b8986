// The MAML family against definitions: second-order meta-gradients against finite differences,
// first-order MAML and Reptile against their formulas, iMAML against the exact implicit gradient.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "../autograd/grad.h"
#include "../autograd/ops.h"
#include "../meta/imaml.h"
#include "../meta/maml.h"
#include "../meta/protonet.h"
#include "../meta/reptile.h"
#include "../nn/linear.h"
#include "../nn/losses.h"
#include "../nn/embedding.h"
#include "../nn/mlp.h"
#include "../nn/transformer.h"

using namespace mg;
using mg::nn::TensorDict;

namespace {

meta::Task regression_task(uint64_t seed, int64_t in, int64_t n) {
  Generator gen(seed);
  meta::Task t;
  t.support_x = randn({n, in}, kFloat64, kCPU, &gen);
  t.support_y = randn({n, 1}, kFloat64, kCPU, &gen);
  t.query_x = randn({n, in}, kFloat64, kCPU, &gen);
  t.query_y = randn({n, 1}, kFloat64, kCPU, &gen);
  return t;
}

Tensor mse(const Tensor& out, const Tensor& y) { return nn::mse_loss(out, y); }

TensorDict fresh_leaves(const TensorDict& params) {
  return params.map([](const Tensor& p) { return p.detach().clone().requires_grad_(); });
}

// Central differences of f over every element of every entry of params.
std::vector<double> finite_differences(const TensorDict& params, const std::function<double(const TensorDict&)>& f,
                                       double eps = 1e-6) {
  std::vector<double> out;
  for (const auto& [name, p] : params) {
    for (int64_t j = 0; j < p.numel(); ++j) {
      auto perturbed = [&](double delta) {
        TensorDict copy = fresh_leaves(params);
        Tensor flat = copy.at(name).detach().reshape({-1});
        flat.narrow(0, j, 1).add_(delta);
        return f(copy);
      };
      out.push_back((perturbed(eps) - perturbed(-eps)) / (2 * eps));
    }
  }
  return out;
}

std::vector<double> flatten(const TensorList& tensors) {
  std::vector<double> out;
  for (const Tensor& t : tensors)
    for (double v : t.to_vector()) out.push_back(v);
  return out;
}

double max_relative_error(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double scale = 0, worst = 0;
  for (double v : b) scale = std::max(scale, std::abs(v));
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / std::max(scale, 1e-12));
  return worst;
}

// Token embedding -> one encoder layer -> mean over positions -> linear: the words task's model,
// in miniature.
class TinyTransformerClassifier : public nn::Module {
 public:
  TinyTransformerClassifier(int64_t vocab, int64_t d_model, int64_t classes, Generator* gen) {
    register_module("embed", std::make_shared<nn::Embedding>(vocab, d_model, std::nullopt, gen));
    register_module("encoder", std::make_shared<nn::TransformerEncoderLayer>(
                                   nn::TransformerLayerOptions{.d_model = d_model, .nhead = 2, .dim_feedforward = 8,
                                                               .dropout = 0.0, .norm_first = true},
                                   gen));
    register_module("head", std::make_shared<nn::Linear>(d_model, classes, true, gen));
  }
  std::string type_name() const override { return "TinyTransformerClassifier"; }
  using nn::Module::forward;
  Tensor forward(const nn::Params& p, const Tensor& tokens) override {
    Tensor h = child("embed")->forward(p.sub("embed"), tokens);
    h = child("encoder")->forward(p.sub("encoder"), h);
    return child("head")->forward(p.sub("head"), h.mean({1}));
  }
};

}  // namespace

TEST_SUITE("meta.algorithms") {
  TEST_CASE("MAML through 3 inner steps of a tiny transformer equals finite differences") {
    Generator gen(21);
    TinyTransformerClassifier model(6, 4, 2, &gen);
    model.to(kFloat64);
    meta::Task task;
    task.support_x = randint(0, 6, {4, 3}, kCPU, &gen);
    task.support_y = tensor(std::vector<int64_t>{0, 1, 0, 1}, {4});
    task.query_x = randint(0, 6, {4, 3}, kCPU, &gen);
    task.query_y = tensor(std::vector<int64_t>{1, 0, 1, 0}, {4});
    auto ce = [](const Tensor& logits, const Tensor& y) { return nn::cross_entropy(logits, y); };
    meta::MamlOptions options;
    options.inner = {.steps = 3, .lr = 0.3};
    TensorDict params = fresh_leaves(model.named_parameters());
    auto query_loss = [&](const TensorDict& p) { return meta::maml_task_loss(model, p, task, ce, options).query_loss; };
    const std::vector<double> analytic = flatten(grad({query_loss(params)}, params.values()));
    // Every tensor's first three elements: enough to touch each layer without thousands of evaluations.
    TensorDict probe;
    std::vector<double> expected;
    std::size_t offset = 0;
    for (const auto& [name, p] : params) {
      const int64_t n = std::min<int64_t>(3, p.numel());
      for (int64_t j = 0; j < n; ++j) {
        auto at = [&](double delta) {
          TensorDict copy = fresh_leaves(params);
          copy.at(name).detach().reshape({-1}).narrow(0, j, 1).add_(delta);
          return query_loss(copy).item();
        };
        const double numeric = (at(1e-6) - at(-1e-6)) / 2e-6;
        expected.push_back(numeric);
        probe.insert(name + "#" + std::to_string(j), tensor({analytic[offset + j]}, kFloat64));
      }
      offset += p.numel();
    }
    std::vector<double> got;
    for (const auto& [key, t] : probe) got.push_back(t.item());
    const double err = max_relative_error(got, expected);
    MESSAGE("MAML 3 steps, tiny transformer: ", got.size(), " entries, max relative error ", err);
    CHECK(err < 1e-6);
  }

  TEST_CASE("MAML through 3 inner steps equals finite differences of the post-adaptation query loss") {
    Generator gen(11);
    auto model = nn::make_mlp({.sizes = {2, 8, 8, 1}, .activation = nn::functional::Activation::Tanh}, &gen);
    model->to(kFloat64);
    const meta::Task task = regression_task(5, 2, 6);
    meta::MamlOptions options;
    options.inner = {.steps = 3, .lr = 0.1};
    auto query_loss = [&](const TensorDict& params) {
      return meta::maml_task_loss(*model, params, task, mse, options).query_loss;
    };
    TensorDict params = fresh_leaves(model->named_parameters());
    const std::vector<double> analytic = flatten(grad({query_loss(params)}, params.values()));
    const std::vector<double> numeric =
        finite_differences(params, [&](const TensorDict& p) { return query_loss(p).item(); });
    const double err = max_relative_error(analytic, numeric);
    MESSAGE("MAML 3 steps, MLP 2-8-8-1: max relative error vs finite differences ", err);
    CHECK(err < 1e-6);
  }

  TEST_CASE("Meta-SGD: gradients for the learned per-element rates match finite differences") {
    Generator gen(12);
    auto model = nn::make_mlp({.sizes = {2, 4, 1}, .activation = nn::functional::Activation::Tanh}, &gen);
    model->to(kFloat64);
    const meta::Task task = regression_task(6, 2, 5);
    meta::MamlOptions options;
    options.inner = {.steps = 2, .lr = 0.05, .learned_lr = meta::LearnedLr::PerElement};
    TensorDict params = fresh_leaves(model->named_parameters());
    TensorDict lrs = meta::make_learned_lrs(params, options.inner);
    Tensor loss = meta::maml_task_loss(*model, params, task, mse, options, &lrs).query_loss;
    const std::vector<double> analytic = flatten(grad({loss}, lrs.values()));
    const std::vector<double> numeric = finite_differences(lrs, [&](const TensorDict& rates) {
      return meta::maml_task_loss(*model, params, task, mse, options, &rates).query_loss.item();
    });
    CHECK(max_relative_error(analytic, numeric) < 1e-6);
  }

  TEST_CASE("first-order MAML's meta-gradient is the query gradient at the adapted weights") {
    Generator gen(13);
    auto model = nn::make_mlp({.sizes = {2, 6, 1}, .activation = nn::functional::Activation::Tanh}, &gen);
    model->to(kFloat64);
    const meta::Task task = regression_task(7, 2, 5);
    meta::MamlOptions options;
    options.inner = {.steps = 3, .lr = 0.1, .second_order = false};
    TensorDict params = fresh_leaves(model->named_parameters());
    const std::vector<double> fomaml =
        flatten(grad({meta::maml_task_loss(*model, params, task, mse, options).query_loss}, params.values()));
    // The definition: adapt with plain SGD, then differentiate the query loss at phi.
    TensorDict phi = fresh_leaves(params);
    for (int s = 0; s < 3; ++s) {
      TensorList g = grad({mse(model->forward(nn::Params(phi), task.support_x), task.support_y)}, phi.values());
      TensorDict next;
      std::size_t i = 0;
      for (const auto& [name, p] : phi) next.insert(name, (p - g[i++] * 0.1).detach().requires_grad_());
      phi = next;
    }
    const std::vector<double> definition =
        flatten(grad({mse(model->forward(nn::Params(phi), task.query_x), task.query_y)}, phi.values()));
    CHECK(max_relative_error(fomaml, definition) < 1e-12);
    // and it differs from the second-order meta-gradient
    options.inner.second_order = true;
    const std::vector<double> maml =
        flatten(grad({meta::maml_task_loss(*model, params, task, mse, options).query_loss}, params.values()));
    CHECK(max_relative_error(maml, fomaml) > 1e-4);
  }

  TEST_CASE("ANIL adapts only the head") {
    Generator gen(14);
    auto model = nn::make_mlp({.sizes = {2, 4, 1}}, &gen);
    const meta::Task task = regression_task(8, 2, 5);
    meta::InnerLoopOptions inner{.steps = 2, .lr = 0.1, .adapt_prefixes = {"2."}};
    TensorDict params = model->named_parameters();
    meta::Adaptation a = meta::adapt(*model, params, task.support_x.to(kFloat32), task.support_y.to(kFloat32), mse,
                                     inner);
    CHECK(a.params.at("0.weight").same(params.at("0.weight")));
    CHECK_FALSE(a.params.at("2.weight").same(params.at("2.weight")));
  }

  TEST_CASE("Reptile's direction is theta minus the SGD-adapted weights") {
    Generator gen(15);
    auto model = nn::make_mlp({.sizes = {2, 5, 1}, .activation = nn::functional::Activation::Tanh}, &gen);
    model->to(kFloat64);
    const meta::Task task = regression_task(9, 2, 5);
    TensorDict params = model->named_parameters();
    TensorDict direction = meta::reptile_direction(*model, params, task, mse, {.steps = 4, .lr = 0.05});
    TensorDict phi = fresh_leaves(params);
    for (int s = 0; s < 4; ++s) {
      TensorList g = grad({mse(model->forward(nn::Params(phi), task.support_x), task.support_y)}, phi.values());
      TensorDict next;
      std::size_t i = 0;
      for (const auto& [name, p] : phi) next.insert(name, (p - g[i++] * 0.05).detach().requires_grad_());
      phi = next;
    }
    for (const auto& [name, p] : params) {
      const std::vector<double> want = (p - phi.at(name)).to_vector(), got = direction.at(name).to_vector();
      for (std::size_t i = 0; i < want.size(); ++i) CHECK(std::abs(got[i] - want[i]) < 1e-12);
    }
  }

  TEST_CASE("iMAML equals the exact implicit gradient on a quadratic problem") {
    // Linear least squares: L(w) = |X w - y|^2 / (2 n), so L_support has Hessian A = X^T X / n and
    // the regularised inner problem has the closed form phi* = (A + lambda I)^-1 (X^T y / n + lambda theta).
    const int64_t d = 3, n = 8;
    const double lambda = 2.0;
    Generator gen(16);
    nn::Linear model(d, 1, /*bias=*/false, &gen);
    model.to(kFloat64);
    const meta::Task task = regression_task(10, d, n);
    auto half_mse = [](const Tensor& out, const Tensor& y) { return nn::mse_loss(out, y) * 0.5; };
    TensorDict params = fresh_leaves(model.named_parameters());
    meta::ImamlResult result = meta::imaml_meta_gradient(
        model, params, task, half_mse, {.inner_steps = 2000, .inner_lr = 0.2, .lambda = lambda, .cg_steps = 3});

    auto M = [](const Tensor& t) { return t.to_vector(); };
    const std::vector<double> xs = M(task.support_x), ys = M(task.support_y), xq = M(task.query_x),
                              yq = M(task.query_y), theta = M(params.at("weight"));
    auto solve = [](std::vector<double> a, std::vector<double> b, int64_t size) {  // Gaussian elimination
      for (int64_t c = 0; c < size; ++c) {
        for (int64_t r = c + 1; r < size; ++r) {
          const double f = a[r * size + c] / a[c * size + c];
          for (int64_t k = c; k < size; ++k) a[r * size + k] -= f * a[c * size + k];
          b[r] -= f * b[c];
        }
      }
      std::vector<double> x(size);
      for (int64_t r = size - 1; r >= 0; --r) {
        double s = b[r];
        for (int64_t k = r + 1; k < size; ++k) s -= a[r * size + k] * x[k];
        x[r] = s / a[r * size + r];
      }
      return x;
    };
    std::vector<double> A(d * d, 0.0), rhs(d, 0.0);
    for (int64_t i = 0; i < d; ++i) {
      for (int64_t j = 0; j < d; ++j)
        for (int64_t r = 0; r < n; ++r) A[i * d + j] += xs[r * d + i] * xs[r * d + j] / n;
      for (int64_t r = 0; r < n; ++r) rhs[i] += xs[r * d + i] * ys[r] / n;
    }
    std::vector<double> reg = A, b = rhs;
    for (int64_t i = 0; i < d; ++i) reg[i * d + i] += lambda, b[i] += lambda * theta[i];
    const std::vector<double> phi = solve(reg, b, d);
    std::vector<double> gq(d, 0.0);
    for (int64_t r = 0; r < n; ++r) {
      double res = -yq[r];
      for (int64_t c = 0; c < d; ++c) res += xq[r * d + c] * phi[c];
      for (int64_t c = 0; c < d; ++c) gq[c] += xq[r * d + c] * res / n;
    }
    std::vector<double> sys = A;
    for (int64_t i = 0; i < d * d; ++i) sys[i] /= lambda;
    for (int64_t i = 0; i < d; ++i) sys[i * d + i] += 1.0;
    const std::vector<double> exact = solve(sys, gq, d);
    const std::vector<double> got = M(result.meta_gradient.at("weight"));
    for (int64_t i = 0; i < d; ++i) CHECK(std::abs(got[i] - exact[i]) < 1e-8);
    MESSAGE("iMAML CG relative residual ", result.cg_residual);
  }

  TEST_CASE("ProtoNet loss: prototypes are class means, logits negative squared distances") {
    nn::Linear embed(2, 2, false);
    embed.to(kFloat64);
    nn::TensorDict identity{{"weight", tensor({1.0, 0.0, 0.0, 1.0}, {2, 2}, kFloat64).requires_grad_()}};
    meta::Task task;
    task.support_x = tensor({0.0, 0.0, 2.0, 0.0, 10.0, 10.0, 12.0, 10.0}, {4, 2}, kFloat64);
    task.support_y = tensor(std::vector<int64_t>{0, 0, 1, 1}, {4});
    task.query_x = tensor({1.0, 1.0}, {1, 2}, kFloat64);
    task.query_y = tensor(std::vector<int64_t>{0}, {1});
    meta::ProtoOutput out = meta::protonet_loss(embed, nn::Params(identity), task, 2);
    // prototypes (1, 0) and (11, 10): distances 1 and 181
    CHECK(out.logits.to_vector() == std::vector<double>{-1.0, -181.0});
    CHECK(out.loss.item() == doctest::Approx(std::log1p(std::exp(-180.0))));
    CHECK(grad({out.loss}, {identity.at("weight")})[0].defined());
  }

  TEST_CASE("MAML++ multi-step loss weights sum to one and anneal towards the last step") {
    for (int64_t it : {0, 10, 100, 1000}) {
      std::vector<double> w = meta::multi_step_loss_weights(5, it, 100);
      double total = 0;
      for (double v : w) total += v;
      CHECK(total == doctest::Approx(1.0));
    }
    CHECK(meta::multi_step_loss_weights(5, 0, 100)[0] == doctest::Approx(0.2));
    CHECK(meta::multi_step_loss_weights(5, 1000, 100)[0] == doctest::Approx(0.006));
  }
}
