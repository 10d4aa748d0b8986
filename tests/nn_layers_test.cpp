// Linear, Embedding, LayerNorm, Dropout, Flatten, Sequential, MLP and init: values, PyTorch's
// default inits, fast weights (forward with a TensorDict) and first and second derivatives.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "../nn/activation.h"
#include "../nn/dropout.h"
#include "../nn/embedding.h"
#include "../nn/flatten.h"
#include "../nn/functional.h"
#include "../nn/init.h"
#include "../nn/layer_norm.h"
#include "../nn/linear.h"
#include "../nn/mlp.h"
#include "../nn/sequential.h"
#include "nn_test_util.h"

using namespace mg;
using namespace mg::nn;
using namespace mg::nn::test;

namespace {

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

double std_of(const std::vector<double>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size()));
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  NoGradGuard no_grad;
  return max_abs(a - b);
}

}  // namespace

TEST_CASE("init: fans, gains and the ranges of PyTorch's initialisers") {
  auto [fan_in, fan_out] = init::calculate_fan_in_and_fan_out(zeros({6, 4, 3, 3}));
  CHECK(fan_in == 36);
  CHECK(fan_out == 54);
  CHECK_THROWS_AS(init::calculate_fan_in_and_fan_out(zeros({5})), Error);
  CHECK(init::calculate_gain(init::Nonlinearity::ReLU) == doctest::Approx(std::sqrt(2.0)));
  CHECK(init::calculate_gain(init::Nonlinearity::LeakyReLU, std::sqrt(5.0)) == doctest::Approx(std::sqrt(1.0 / 3.0)));
  CHECK(init::calculate_gain(init::Nonlinearity::Tanh) == doctest::Approx(5.0 / 3.0));

  Generator gen(7);
  Tensor w = init::kaiming_uniform_(zeros({200, 50}), std::sqrt(5.0), init::FanMode::FanIn,
                                    init::Nonlinearity::LeakyReLU, &gen);
  const double bound = 1.0 / std::sqrt(50.0);
  std::vector<double> v = w.values_as_double();
  for (double x : v) REQUIRE(std::abs(x) <= bound);
  CHECK(std_of(v) == doctest::Approx(bound / std::sqrt(3.0)).epsilon(0.03));

  Tensor x = init::xavier_uniform_(zeros({300, 100}, kFloat64), 2.0, &gen);
  const double xb = 2.0 * std::sqrt(6.0 / 400.0);
  v = x.values_as_double();
  for (double e : v) REQUIRE(std::abs(e) <= xb);
  CHECK(std_of(v) == doctest::Approx(xb / std::sqrt(3.0)).epsilon(0.03));

  v = init::xavier_normal_(zeros({300, 100}), 1.0, &gen).values_as_double();
  CHECK(std_of(v) == doctest::Approx(std::sqrt(2.0 / 400.0)).epsilon(0.03));
  v = init::kaiming_normal_(zeros({300, 100}), 0.0, init::FanMode::FanOut, init::Nonlinearity::ReLU, &gen)
          .values_as_double();
  CHECK(std_of(v) == doctest::Approx(std::sqrt(2.0 / 300.0)).epsilon(0.03));
  v = init::normal_(zeros({100, 100}), 3.0, 0.5, &gen).values_as_double();
  CHECK(mean_of(v) == doctest::Approx(3.0).epsilon(0.01));
  CHECK(std_of(v) == doctest::Approx(0.5).epsilon(0.03));
  v = init::uniform_(zeros({1000}), -2.0, -1.0, &gen).values_as_double();
  for (double e : v) REQUIRE((e >= -2.0 && e <= -1.0));
  CHECK(init::ones_(zeros({3})).values_as_double() == std::vector<double>{1, 1, 1});
  CHECK(init::constant_(zeros({2}), 0.25).values_as_double() == std::vector<double>{0.25, 0.25});

  // A parameter stays a leaf that requires grad, with no history from the fill.
  Tensor p = zeros({3, 3}).requires_grad_();
  init::xavier_uniform_(p, 1.0, &gen);
  CHECK(p.is_leaf());
  CHECK(p.requires_grad());
  CHECK(p.grad_fn() == nullptr);
  CHECK_THROWS_AS(init::uniform_(zeros({2}, kInt64)), Error);
}

TEST_CASE("init: the same generator seed gives the same layer") {
  Generator a(3), b(3), c(4);
  Linear la(5, 4, true, &a), lb(5, 4, true, &b), lc(5, 4, true, &c);
  CHECK(la.param("weight").values_as_double() == lb.param("weight").values_as_double());
  CHECK(la.param("bias").values_as_double() == lb.param("bias").values_as_double());
  CHECK(la.param("weight").values_as_double() != lc.param("weight").values_as_double());
}

TEST_CASE("Linear: PyTorch's names, shapes, init and values") {
  Generator gen(1);
  Linear lin(3, 2, true, &gen);
  const TensorDict params = lin.named_parameters();
  CHECK(params.keys() == std::vector<std::string>{"weight", "bias"});
  CHECK(params.at("weight").shape() == Shape{2, 3});
  CHECK(params.at("bias").shape() == Shape{2});
  for (double v : params.at("bias").values_as_double()) CHECK(std::abs(v) <= 1.0 / std::sqrt(3.0));
  CHECK(Linear(3, 2, false).named_parameters().keys() == std::vector<std::string>{"weight"});

  lin.load_state_dict({{"weight", values({1, 2, 3, 4, 5, 6}, {2, 3})}, {"bias", values({0.5, -1.0}, {2})}});
  Tensor y = lin(values({1, 0, -1, 2, 1, 0}, {2, 3}));
  CHECK(y.shape() == Shape{2, 2});
  CHECK(y.values_as_double() == std::vector<double>{-1.5, -3.0, 4.5, 12.0});
  // Leading batch dims broadcast.
  CHECK(lin(zeros({4, 5, 3})).shape() == Shape{4, 5, 2});
  CHECK_THROWS_AS(lin(zeros({2, 4})), Error);
}

TEST_CASE("Linear: float64, fast weights and double backward") {
  Generator gen(2);
  Linear lin(3, 2, true, &gen);
  lin.to(kFloat64);
  CHECK(lin.param("weight").dtype() == kFloat64);
  Tensor x = randn64({4, 3}, 10).requires_grad_();
  CHECK(lin(x).dtype() == kFloat64);
  check_fast_weights(lin, [&](const Params& p) { return lin.forward(p, x); });
  check_module_grads(lin, {x}, [&](const Params& p, const TensorList& in) { return lin.forward(p, in[0]); });
}

TEST_CASE("Embedding: lookup, padding_idx and its gradient") {
  Generator gen(3);
  Embedding emb(5, 3, 1, &gen);
  Tensor w = emb.param("weight");
  CHECK(w.shape() == Shape{5, 3});
  CHECK(select(w, 0, 1).values_as_double() == std::vector<double>{0, 0, 0});
  CHECK(std_of(Embedding(200, 50, std::nullopt, &gen).param("weight").values_as_double()) ==
        doctest::Approx(1.0).epsilon(0.03));
  CHECK(Embedding(5, 3, -1).padding_idx() == 4);
  CHECK_THROWS_AS(Embedding(5, 3, 5), Error);

  Tensor idx = tensor(std::vector<int64_t>{0, 1, 4, 1, 2, 0}, {2, 3});
  Tensor out = emb(idx);
  CHECK(out.shape() == Shape{2, 3, 3});
  CHECK(select(select(out, 0, 0), 0, 2).values_as_double() == select(w, 0, 4).values_as_double());

  // The padding row passes no gradient, even when it is not zero (e.g. after loading weights).
  {
    NoGradGuard no_grad;
    select(w, 0, 1).fill_(0.5);
  }
  Tensor out2 = emb(idx);
  CHECK(select(select(out2, 0, 0), 0, 1).values_as_double() == std::vector<double>{0.5, 0.5, 0.5});
  sum(square(out2)).backward();
  Tensor g = w.grad();
  CHECK(select(g, 0, 1).values_as_double() == std::vector<double>{0, 0, 0});
  CHECK(max_abs(select(g, 0, 0)) > 0);
  CHECK(select(g, 0, 3).values_as_double() == std::vector<double>{0, 0, 0});  // unused row
  CHECK_THROWS_AS(emb(tensor(std::vector<int64_t>{5}, {1})), Error);

  emb.to(kFloat64);
  check_fast_weights(emb, [&](const Params& p) { return emb.forward(p, idx); });
  // Without the padding index among the inputs (its row's gradient is zero by design).
  Tensor no_pad = tensor(std::vector<int64_t>{0, 3, 4, 3, 2, 0}, {2, 3});
  check_module_grads(emb, {}, [&](const Params& p, const TensorList&) { return emb.forward(p, no_pad); });
}

TEST_CASE("LayerNorm: normalises the trailing dims; init ones and zeros") {
  LayerNorm ln(Shape{2, 3});
  CHECK(ln.param("weight").values_as_double() == std::vector<double>(6, 1.0));
  CHECK(ln.param("bias").values_as_double() == std::vector<double>(6, 0.0));
  ln.to(kFloat64);
  Tensor x = randn64({4, 2, 3}, 11) * 3.0 + 1.0;
  Tensor y = ln(x);
  for (int64_t i = 0; i < 4; ++i) {
    std::vector<double> row = select(y, 0, i).values_as_double();
    CHECK(mean_of(row) == doctest::Approx(0.0).epsilon(1e-12).scale(1.0));
    // Biased variance with eps = 1e-5: std slightly below 1.
    const double var_x = std::pow(std_of(select(x, 0, i).values_as_double()), 2);
    CHECK(std_of(row) == doctest::Approx(std::sqrt(var_x / (var_x + 1e-5))).epsilon(1e-12));
  }
  CHECK(LayerNorm(4, 1e-5, false).named_parameters().empty());
  CHECK_THROWS_AS(ln(zeros({4, 3, 2}, kFloat64)), Error);

  Generator gen(12);
  init::normal_(ln.param("weight"), 1.0, 0.5, &gen);
  init::normal_(ln.param("bias"), 0.0, 0.5, &gen);
  Tensor xs = randn64({2, 2, 3}, 13).requires_grad_();
  check_fast_weights(ln, [&](const Params& p) { return ln.forward(p, xs); });
  check_module_grads(ln, {xs}, [&](const Params& p, const TensorList& in) { return ln.forward(p, in[0]); });
}

TEST_CASE("layer_norm: the fused op matches the composite, values and first and second derivatives") {
  for (DType dt : {kFloat32, kFloat64}) {
    CAPTURE(dt);
    Generator gen(21);
    Tensor x = (randn({3, 4, 40}, dt, kCPU, &gen) * 2.0 + 1.0).requires_grad_();
    Tensor w = randn({40}, dt, kCPU, &gen).requires_grad_();
    Tensor b = randn({40}, dt, kCPU, &gen).requires_grad_();
    const Tensor r = randn({3, 4, 40}, dt, kCPU, &gen);
    Tensor centered = x - mean(x, {-1}, true);
    Tensor composite = centered * rsqrt(mean(centered * centered, {-1}, true) + 1e-5) * w + b;
    Tensor fused = functional::layer_norm(x, {40}, w, b, 1e-5);
    const double tol = dt == kFloat32 ? 2e-6 : 1e-13;
    CHECK(max_abs_diff(fused, composite) <= tol * 4);
    // Gradients with create_graph, then a second derivative through them.
    const TensorList gf = grad({sum(fused * r)}, {x, w, b}, {}, {.create_graph = true});
    const TensorList gc = grad({sum(composite * r)}, {x, w, b}, {}, {.create_graph = true});
    for (int i = 0; i < 3; ++i) CHECK(max_abs_diff(gf[i], gc[i]) <= tol * 40);
    const TensorList hf = grad({sum(gf[0] * gf[0]) + sum(gf[1])}, {x, w}, {}, {});
    const TensorList hc = grad({sum(gc[0] * gc[0]) + sum(gc[1])}, {x, w}, {}, {});
    for (int i = 0; i < 2; ++i) CHECK(max_abs_diff(hf[i], hc[i]) <= tol * 400);
    // Over two trailing dims, without weight or bias, first order only (the kernel's values).
    Tensor x2 = (randn({3, 4, 10}, dt, kCPU, &gen) * 3.0 - 1.0).requires_grad_();
    Tensor c2 = x2 - mean(x2, {-2, -1}, true);
    Tensor composite2 = c2 * rsqrt(mean(c2 * c2, {-2, -1}, true) + 1e-5);
    const Tensor r2 = randn({3, 4, 10}, dt, kCPU, &gen);
    CHECK(max_abs_diff(grad({sum(functional::layer_norm(x2, {4, 10}, Tensor(), Tensor(), 1e-5) * r2)}, {x2})[0],
                       grad({sum(composite2 * r2)}, {x2})[0]) <= tol * 40);
  }
  // Per-task parameters [T, 40] still work (the composite path) and agree with the fused op per task.
  Generator gen(22);
  Tensor x = randn({2, 5, 40}, kFloat64, kCPU, &gen);
  Tensor w = randn({2, 40}, kFloat64, kCPU, &gen), b = randn({2, 40}, kFloat64, kCPU, &gen);
  Tensor per_task = functional::layer_norm(x, {40}, w, b, 1e-5);
  for (int64_t t = 0; t < 2; ++t)
    CHECK(max_abs_diff(select(per_task, 0, t), layer_norm(select(x, 0, t), {40}, select(w, 0, t), select(b, 0, t))) <=
          1e-12);
  CHECK_THROWS_AS(layer_norm(x, {41}), Error);
  CHECK_THROWS_AS(functional::layer_norm(x, {40}, ones({41}, kFloat64)), Error);
}

TEST_CASE("Dropout: identity in eval, scaled Bernoulli mask in training, reproducible") {
  Generator gen(4);
  Dropout drop(0.25, &gen);
  Tensor x = ones({100, 100}, kFloat64);
  drop.eval();
  CHECK(drop(x).same(x));
  drop.train();
  Tensor y = drop(x);
  std::vector<double> v = y.values_as_double();
  int64_t zeros_seen = 0;
  for (double e : v) {
    REQUIRE((e == 0.0 || std::abs(e - 1.0 / 0.75) < 1e-12));
    zeros_seen += e == 0.0;
  }
  CHECK(static_cast<double>(zeros_seen) / 10000.0 == doctest::Approx(0.25).epsilon(0.06));
  CHECK(drop(x).values_as_double() != v);  // a fresh mask every call

  // Same seed, same masks; and the gradient is the mask itself.
  Generator g1(9), g2(9);
  Dropout d1(0.5, &g1), d2(0.5, &g2);
  Tensor xr = randn64({8, 8}, 5).requires_grad_();
  Tensor y1 = d1(xr);
  CHECK(y1.values_as_double() == d2(xr).values_as_double());
  Tensor gx = grad({sum(y1)}, {xr})[0];
  std::vector<double> yv = y1.values_as_double(), gv = gx.values_as_double();
  for (std::size_t i = 0; i < gv.size(); ++i) CHECK(gv[i] == (yv[i] == 0.0 ? 0.0 : 2.0));

  // With the generator reset on every call the mask is fixed, so the checks apply.
  GradcheckResult gg = gradgradcheck(
      [](const TensorList& in) {
        Generator fixed(11);
        return square(functional::dropout(in[0], 0.3, true, &fixed));
      },
      {randn64({3, 4}, 6).requires_grad_()});
  INFO(gg.message);
  CHECK(gg.ok);

  CHECK(Dropout(0.0)(x).same(x));
  CHECK(max_abs(Dropout(1.0)(x)) == 0.0);
  CHECK_THROWS_AS(Dropout(1.5), Error);
  CHECK(functional::dropout(x, 0.5, false).same(x));
}

TEST_CASE("Flatten") {
  CHECK(Flatten()(zeros({2, 3, 4})).shape() == Shape{2, 12});
  CHECK(Flatten(0)(zeros({2, 3, 4})).shape() == Shape{24});
  CHECK(Flatten(1, 2)(zeros({2, 3, 4, 5})).shape() == Shape{2, 12, 5});
  CHECK(Flatten(-2)(zeros({2, 3, 4})).shape() == Shape{2, 12});
  CHECK_THROWS_AS(Flatten(2, 1)(zeros({2, 3, 4})), Error);
}

TEST_CASE("Sequential and MLP: numbered children, PyTorch's state dict names, composition") {
  Generator gen(5);
  auto net = make_mlp({.sizes = {3, 5, 4, 2}, .activation = functional::Activation::Tanh}, &gen);
  CHECK(net->size() == 5);
  CHECK(net->named_parameters().keys() ==
        std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"});
  CHECK((*net)[1]->type_name() == "Tanh");
  auto with_dropout = make_mlp({.sizes = {3, 5, 2}, .dropout = 0.1}, &gen);
  CHECK(with_dropout->size() == 4);
  CHECK((*with_dropout)[2]->type_name() == "Dropout");
  CHECK(with_dropout->named_parameters().keys() ==
        std::vector<std::string>{"0.weight", "0.bias", "3.weight", "3.bias"});
  CHECK_THROWS_AS(make_mlp({.sizes = {3}}), Error);

  net->to(kFloat64);
  Tensor x = randn64({4, 3}, 20).requires_grad_();
  Tensor manual = x;
  for (std::size_t i = 0; i < net->size(); ++i) manual = (*net)[i]->forward(manual);
  CHECK((*net)(x).values_as_double() == manual.values_as_double());

  Sequential seq({std::make_shared<Linear>(3, 4, true, &gen), std::make_shared<GELU>(), std::make_shared<Flatten>(0),
                  std::make_shared<Sigmoid>()});
  seq.to(kFloat64);
  CHECK(seq(x).shape() == Shape{16});
  check_fast_weights(*net, [&](const Params& p) { return net->forward(p, x); });
  check_module_grads(*net, {x}, [&](const Params& p, const TensorList& in) { return net->forward(p, in[0]); });
  check_module_grads(seq, {x}, [&](const Params& p, const TensorList& in) { return seq.forward(p, in[0]); });
  auto relu_net = make_mlp({.sizes = {3, 4, 2}}, &gen);
  relu_net->to(kFloat64);
  check_module_grads(*relu_net, {x},
                     [&](const Params& p, const TensorList& in) { return relu_net->forward(p, in[0]); });
}

TEST_CASE("Module: a missing fast weight is an error naming it") {
  Linear lin(3, 2);
  TensorDict partial{{"weight", zeros({2, 3})}};
  CHECK_THROWS_WITH_AS(lin.forward(Params(partial), zeros({1, 3})), doctest::Contains("bias"), Error);
  Sequential seq({std::make_shared<Linear>(3, 2)});
  TensorDict wrong{{"0.weight", zeros({2, 4})}, {"0.bias", zeros({2})}};
  CHECK_THROWS_AS(seq.forward(Params(wrong), zeros({1, 3})), Error);
}
