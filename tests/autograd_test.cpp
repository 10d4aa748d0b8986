// The tape and the engine: higher-order derivatives against closed forms, Hessians against
// finite differences, the MAML meta-gradient identity, and the engine's bookkeeping.
#include <doctest/doctest.h>

#include <cmath>
#include <latch>
#include <memory>
#include <thread>
#include <vector>

#include "../autograd/dot.h"
#include "../autograd/grad.h"
#include "../autograd/grad_mode.h"
#include "../autograd/node.h"
#include "../autograd/ops.h"
#include "../tensor/creation.h"

using namespace mg;

namespace {

double third_derivative_x3_sinx(double x) {
  return 6 * std::sin(x) + 18 * x * std::cos(x) - 9 * x * x * std::sin(x) - x * x * x * std::cos(x);
}

}  // namespace

TEST_SUITE("autograd") {
  TEST_CASE("third derivative of x^3 sin(x) by three nested grad calls") {
    Tensor x = tensor({0.5, 1.0, 2.0}, kFloat64).requires_grad_();
    Tensor y = (x * x * x * sin(x)).sum();
    Tensor g1 = grad({y}, {x}, {}, {.create_graph = true})[0];
    Tensor g2 = grad({g1.sum()}, {x}, {}, {.create_graph = true})[0];
    Tensor g3 = grad({g2.sum()}, {x})[0];
    const std::vector<double> got = g3.to_vector();
    const std::vector<double> at = {0.5, 1.0, 2.0};
    for (std::size_t i = 0; i < at.size(); ++i) CHECK(std::abs(got[i] - third_derivative_x3_sinx(at[i])) < 1e-10);
    CHECK_FALSE(g3.requires_grad());  // the last call did not create a graph
  }

  TEST_CASE("fourth and fifth derivatives of exp(2x) are 2^n exp(2x)") {
    Tensor x = tensor({0.3}, kFloat64).requires_grad_();
    Tensor d = exp(x * 2.0).sum();
    for (int order = 1; order <= 5; ++order) {
      d = grad({d.sum()}, {x}, {}, {.create_graph = true})[0];
      CHECK(std::abs(d.item() - std::pow(2.0, order) * std::exp(0.6)) < 1e-9);
    }
  }

  TEST_CASE("Hessian of a two-layer tanh MLP loss matches finite differences of the gradient") {
    // All parameters live in one vector so that the Hessian is one matrix.
    const int64_t in = 2, hidden = 3, n = 5;
    const int64_t count = hidden * in + hidden + hidden + 1;
    Generator gen(7);
    Tensor X = randn({n, in}, kFloat64, kCPU, &gen);
    Tensor Y = randn({n, 1}, kFloat64, kCPU, &gen);
    Tensor theta = (randn({count}, kFloat64, kCPU, &gen) * 0.7).detach().requires_grad_();
    auto loss = [&](const Tensor& p) {
      Tensor w1 = p.narrow(0, 0, hidden * in).reshape({hidden, in});
      Tensor b1 = p.narrow(0, hidden * in, hidden);
      Tensor w2 = p.narrow(0, hidden * in + hidden, hidden).reshape({1, hidden});
      Tensor b2 = p.narrow(0, count - 1, 1);
      Tensor h = tanh(matmul(X, w1.t()) + b1);
      Tensor r = matmul(h, w2.t()) + b2 - Y;
      return (r * r).mean();
    };
    auto gradient_at = [&](const std::vector<double>& values) {
      Tensor p = tensor(values, {count}, kFloat64).requires_grad_();
      return grad({loss(p)}, {p})[0].to_vector();
    };
    Tensor g = grad({loss(theta)}, {theta}, {}, {.create_graph = true})[0];
    const std::vector<double> base = theta.to_vector();
    const double h = 1e-5;
    double worst = 0;
    for (int64_t i = 0; i < count; ++i) {
      std::vector<double> row = grad({g.select(0, i)}, {theta}, {}, {.retain_graph = true})[0].to_vector();
      std::vector<double> plus = base, minus = base;
      plus[i] += h;
      minus[i] -= h;
      std::vector<double> gp = gradient_at(plus), gm = gradient_at(minus);
      for (int64_t j = 0; j < count; ++j) worst = std::max(worst, std::abs(row[j] - (gp[j] - gm[j]) / (2 * h)));
    }
    MESSAGE("max |H - FD| over ", count, "x", count, " entries: ", worst);
    CHECK(worst < 1e-6);
  }

  TEST_CASE("MAML meta-gradient equals (I - alpha H_support) grad L_query(theta') for linear regression") {
    // L(theta) = |X theta - y|^2 / (2 n): gradient X^T (X theta - y) / n, Hessian X^T X / n.
    const int64_t d = 3, n = 6;
    const double alpha = 0.1;
    Generator gen(3);
    Tensor Xs = randn({n, d}, kFloat64, kCPU, &gen), ys = randn({n}, kFloat64, kCPU, &gen);
    Tensor Xq = randn({n, d}, kFloat64, kCPU, &gen), yq = randn({n}, kFloat64, kCPU, &gen);
    Tensor theta = randn({d}, kFloat64, kCPU, &gen).requires_grad_();
    auto loss = [&](const Tensor& X, const Tensor& y, const Tensor& p) {
      Tensor r = matmul(X, p) - y;
      return (r * r).sum() / (2.0 * n);
    };
    auto meta_gradient = [&](bool create_graph) {
      Tensor g = grad({loss(Xs, ys, theta)}, {theta}, {}, {.create_graph = create_graph})[0];
      Tensor adapted = theta - g * alpha;
      return grad({loss(Xq, yq, adapted)}, {theta})[0].to_vector();
    };

    // The closed form, in plain arithmetic.
    auto M = [](const Tensor& t) { return t.to_vector(); };
    const std::vector<double> xs = M(Xs), vs = M(ys), xq = M(Xq), vq = M(yq), p = M(theta);
    auto grad_of = [&](const std::vector<double>& X, const std::vector<double>& y, const std::vector<double>& w) {
      std::vector<double> out(d, 0.0);
      for (int64_t r = 0; r < n; ++r) {
        double res = -y[r];
        for (int64_t c = 0; c < d; ++c) res += X[r * d + c] * w[c];
        for (int64_t c = 0; c < d; ++c) out[c] += X[r * d + c] * res / n;
      }
      return out;
    };
    std::vector<double> gs = grad_of(xs, vs, p), adapted(d);
    for (int64_t c = 0; c < d; ++c) adapted[c] = p[c] - alpha * gs[c];
    std::vector<double> gq = grad_of(xq, vq, adapted), second_order(d, 0.0);
    for (int64_t i = 0; i < d; ++i) {
      for (int64_t j = 0; j < d; ++j) {
        double h = 0;
        for (int64_t r = 0; r < n; ++r) h += xs[r * d + i] * xs[r * d + j] / n;
        second_order[i] += ((i == j ? 1.0 : 0.0) - alpha * h) * gq[j];
      }
    }

    const std::vector<double> exact = meta_gradient(true), first_order = meta_gradient(false);
    double gap = 0;
    for (int64_t c = 0; c < d; ++c) {
      CHECK(std::abs(exact[c] - second_order[c]) < 1e-10);
      CHECK(std::abs(first_order[c] - gq[c]) < 1e-10);
      gap = std::max(gap, std::abs(second_order[c] - gq[c]));
    }
    CHECK(gap > 1e-3);  // the two paths really differ, so neither check can pass by accident
  }

  TEST_CASE("backward accumulates into leaves and respects retain_graph") {
    Tensor w = tensor({1.0, 2.0}, kFloat64).requires_grad_();
    Tensor y = (w * w).sum();
    y.backward({}, {.retain_graph = true});
    CHECK(w.grad().to_vector() == std::vector<double>{2.0, 4.0});
    y.backward();
    CHECK(w.grad().to_vector() == std::vector<double>{4.0, 8.0});
    CHECK_THROWS_AS(y.backward(), Error);
  }

  TEST_CASE("a gradient reaching a node along two paths is summed") {
    Tensor x = tensor({3.0}, kFloat64).requires_grad_();
    Tensor a = x * 2.0;
    Tensor y = (a * a + a).sum();  // dy/dx = (2a + 1) * 2 = 26
    CHECK(grad({y}, {x})[0].item() == doctest::Approx(26.0));
  }

  TEST_CASE("gradients with respect to intermediate tensors") {
    Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
    Tensor h = x * 3.0;
    Tensor y = (h * h).sum();
    TensorList g = grad({y}, {h, x});
    CHECK(g[0].to_vector() == std::vector<double>{6.0, 12.0});
    CHECK(g[1].to_vector() == std::vector<double>{18.0, 36.0});
  }

  TEST_CASE("a gradient with respect to a non-leaf leaves its node usable for a later backward") {
    Tensor w = tensor({1.0, 2.0}, kFloat64).requires_grad_();
    Tensor f = w * w;
    Tensor gf = grad({(f * 3.0).sum()}, {f})[0];
    CHECK(gf.to_vector() == std::vector<double>{3.0, 3.0});
    CHECK(grad({f.sum()}, {w})[0].to_vector() == std::vector<double>{2.0, 4.0});
  }

  TEST_CASE("NoGradGuard and detach stop recording") {
    Tensor x = tensor({1.0}, kFloat64).requires_grad_();
    {
      NoGradGuard guard;
      CHECK_FALSE((x * 2.0).requires_grad());
    }
    CHECK((x * 2.0).requires_grad());
    CHECK_FALSE(x.detach().requires_grad());
    CHECK((x * 2.0).grad_fn() != nullptr);
    CHECK(x.is_leaf());
    CHECK_FALSE((x * 2.0).is_leaf());
  }

  TEST_CASE("hvp and jvp") {
    // f(x) = sum x^3: Hessian diag(6x).
    Tensor x = tensor({1.0, -2.0, 0.5}, kFloat64).requires_grad_();
    Tensor v = tensor({1.0, 1.0, 2.0}, kFloat64);
    auto f = [](const TensorList& in) { return (in[0] * in[0] * in[0]).sum(); };
    CHECK(hvp(f, {x}, {v})[0].to_vector() == std::vector<double>{6.0, -12.0, 6.0});
    // g(x) = x^2 elementwise: J = diag(2x).
    auto g = [](const TensorList& in) { return in[0] * in[0]; };
    CHECK(jvp(g, {x}, {v}).to_vector() == std::vector<double>{2.0, -4.0, 2.0});
  }

  TEST_CASE("to_dot draws the tape") {
    Tensor x = tensor({1.0}, kFloat64).requires_grad_();
    Tensor y = (exp(x) * x).sum();
    const std::string dot = to_dot(y);
    CHECK(dot.find("digraph") != std::string::npos);
    CHECK(dot.find("exp") != std::string::npos);
    CHECK(dot.find("mul") != std::string::npos);
    CHECK(dot.find("sum") != std::string::npos);
    CHECK(dot.find("leaf") != std::string::npos);
  }

  TEST_CASE("anomaly mode names the op whose backward made a NaN") {
    Tensor x = tensor({0.0}, kFloat64).requires_grad_();
    {
      AnomalyGuard anomaly;
      Tensor y = sqrt(x).sum();
      CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("sqrt"), Error);
    }
    Tensor y = sqrt(x).sum();
    CHECK_NOTHROW(y.backward());
  }

  TEST_CASE("a tape is freed with the tensors that need it") {
    std::weak_ptr<Node> node;
    {
      Tensor x = tensor({1.0}, kFloat64).requires_grad_();
      Tensor y = exp(x);
      node = y.grad_fn();
      CHECK_FALSE(node.expired());
    }
    CHECK(node.expired());
  }

  TEST_CASE("threads recording onto a fresh leaf at once all link to one accumulator") {
    // The first op on a leaf creates its accumulator; several threads may get there together
    // (tasks of a meta-batch on threads, each running the model's forward). They must all end
    // on the same node, or one thread's gradient would flow into a node the leaf has forgotten.
    constexpr int kThreads = 4, kRounds = 300;
    int split = 0;
    for (int round = 0; round < kRounds; ++round) {
      const Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
      std::vector<Tensor> outputs(kThreads);
      std::vector<const Node*> edges(kThreads, nullptr);
      std::latch start(kThreads);
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
          start.arrive_and_wait();
          outputs[static_cast<std::size_t>(t)] = x * static_cast<double>(t + 1);
          edges[static_cast<std::size_t>(t)] = outputs[static_cast<std::size_t>(t)].grad_fn()->next[0].get();
        });
      for (std::thread& thread : threads) thread.join();
      for (int t = 1; t < kThreads; ++t) split += edges[static_cast<std::size_t>(t)] != edges[0] ? 1 : 0;
      REQUIRE(edges[0] != nullptr);
      CHECK(edges[0]->is_accumulator());
      // backward() from every thread's output reaches the leaf's .grad: 1 + 2 + 3 + 4 per element.
      for (const Tensor& y : outputs) y.sum().backward();
      CHECK(x.grad().to_vector() == std::vector<double>{10.0, 10.0});
    }
    CHECK(split == 0);
  }

  TEST_CASE("a very long tape is released without deep recursion") {
    Tensor x = tensor({1.0}, kFloat64).requires_grad_();
    Tensor y = x;
    for (int i = 0; i < 100000; ++i) y = y * 1.0;
    Tensor g = grad({y.sum()}, {x})[0];
    CHECK(g.item() == doctest::Approx(1.0));
    y = Tensor();  // dropping 100,000 nodes must not overflow the stack
  }

  TEST_CASE("max along a dim routes the gradient to the maximal element") {
    Tensor x = tensor({1.0, 5.0, 2.0, 7.0, 3.0, 0.0}, {2, 3}, kFloat64).requires_grad_();
    auto [values, indices] = max(x, 1);
    CHECK(indices.to_vector<int64_t>() == std::vector<int64_t>{1, 0});
    CHECK(grad({values.sum()}, {x})[0].to_vector() == std::vector<double>{0, 1, 0, 1, 0, 0});
  }
}
