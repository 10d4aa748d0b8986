// Optimizers, gradient clipping and learning-rate schedules: closed forms worked by hand,
// trajectories recorded from torch.optim 1.13 (tests/fixtures/gen_optim_fixtures.py), exact
// resumption through a safetensors checkpoint, and the errors bad settings and states raise.
#include <doctest/doctest.h>

#include "check_error.h"

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "../autograd/grad_mode.h"
#include "../autograd/ops.h"
#include "../nn/adam.h"
#include "../nn/clip_grad.h"
#include "../nn/lr_scheduler.h"
#include "../nn/optimizer.h"
#include "../nn/safetensors.h"
#include "../nn/sgd.h"
#include "../tensor/creation.h"

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace {

using namespace mg;
using namespace mg::nn;



Tensor leaf(std::vector<double> values, DType dtype = kFloat64) {
  const auto n = static_cast<int64_t>(values.size());
  Tensor t = tensor(values, {n}, dtype);
  t.requires_grad_();
  return t;
}

void set_grad(const Tensor& p, std::vector<double> values) {
  p.set_grad(tensor(values, p.shape(), p.dtype()));
}

// |actual - expected| <= rtol * |expected| + atol, elementwise; returns the worst ratio of the
// error to that bound (<= 1 passes), so the margin can be read off.
double worst_ratio(const Tensor& actual, const Tensor& expected, double rtol, double atol) {
  REQUIRE(actual.shape() == expected.shape());
  REQUIRE(actual.dtype() == expected.dtype());
  const std::vector<double> a = actual.values_as_double();
  const std::vector<double> e = expected.values_as_double();
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - e[i]) / (rtol * std::abs(e[i]) + atol));
  return worst;
}

bool bit_identical(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor ca = a.contiguous();
  const Tensor cb = b.contiguous();
  return std::memcmp(ca.raw_data(), cb.raw_data(), static_cast<std::size_t>(a.numel()) * element_size(a.dtype())) == 0;
}

std::string fixture(const std::string& name) { return std::string(MG_FIXTURES_DIR) + "/" + name; }

// A fresh directory under the system's temporary directory, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    std::string name = "mg_optim_test_";
#if defined(__unix__) || defined(__APPLE__)
    name += std::to_string(::getpid()) + "_";
#endif
    name += std::to_string(counter++);
    path_ = std::filesystem::temp_directory_path() / name;
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// ---- the cases of gen_optim_fixtures.py, with the same hyperparameters ----

using MakeOptimizer = std::function<std::unique_ptr<Optimizer>(ParamList)>;

struct OptimCase {
  std::string name;
  MakeOptimizer make;
};

std::vector<OptimCase> fixture_cases() {
  return {
      {"sgd", [](ParamList p) { return std::make_unique<SGD>(std::move(p), SGDOptions{.lr = 0.1}); }},
      {"sgd_momentum",
       [](ParamList p) {
         return std::make_unique<SGD>(std::move(p),
                                      SGDOptions{.lr = 0.05, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01});
       }},
      {"sgd_nesterov",
       [](ParamList p) {
         return std::make_unique<SGD>(std::move(p),
                                      SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 0.001, .nesterov = true});
       }},
      {"adam", [](ParamList p) { return std::make_unique<Adam>(std::move(p), AdamOptions{.lr = 0.01}); }},
      {"adam_amsgrad",
       [](ParamList p) {
         return std::make_unique<Adam>(
             std::move(p),
             AdamOptions{.lr = 0.01, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.1, .amsgrad = true});
       }},
      {"adamw",
       [](ParamList p) { return std::make_unique<AdamW>(std::move(p), AdamWOptions{.lr = 0.01, .weight_decay = 0.05}); }},
      {"adamw_amsgrad_maximize",
       [](ParamList p) {
         return std::make_unique<AdamW>(
             std::move(p), AdamWOptions{.lr = 0.02, .weight_decay = 0.01, .amsgrad = true, .maximize = true});
       }},
  };
}

const std::vector<std::string> kNames = {"a", "b", "c"};
constexpr int kSteps = 5;

// Fresh leaves holding the fixture's initial values, named a, b, c.
TensorDict initial_params(const TensorDict& fx) {
  TensorDict params;
  for (const auto& n : kNames) {
    Tensor p = fx.at("init." + n).clone();
    p.requires_grad_();
    params.insert(n, p);
  }
  return params;
}

// Gives each parameter the fixture's gradient of step k, or none where the fixture has none.
void feed_grads(const TensorDict& params, const TensorDict& fx, int k) {
  for (const auto& [n, p] : params) {
    const Tensor g = fx.get("grad." + std::to_string(k) + "." + n);
    p.set_grad(g.defined() ? g.clone() : Tensor());
  }
}

struct Tolerance {
  double rtol;
  double atol;
};
// float32: 1e-5 relative, with an absolute floor of 1e-7 (about an ulp of the parameters, which
// are of order 1) for elements that pass near zero: PyTorch fuses some multiply-adds that we
// round twice, and one ulp of difference in an update of size 0.1 is a large relative error in
// a parameter that lands at 1e-4 (the worst seen: 4.6e-9 absolute there). float64: 1e-10
// relative with a floor of 1e-15 (seen: 7e-14 relative, 7e-18 absolute, on that same element).
Tolerance tolerance_for(DType dtype) { return dtype == kFloat32 ? Tolerance{1e-5, 1e-7} : Tolerance{1e-10, 1e-15}; }

}  // namespace

TEST_SUITE("optim") {
  // ---------------------------------------------------------------------------------------------
  // Closed forms
  // ---------------------------------------------------------------------------------------------

  TEST_CASE("one SGD step is p - lr * g, in place, off the tape, bumping the version") {
    for (DType dtype : {kFloat32, kFloat64}) {
      Tensor p = leaf({1.0, -2.0, 0.5}, dtype);
      const Tensor handle = p;  // the optimizer must change the very storage the model holds
      const uint64_t version = p.version();
      set_grad(p, {0.5, 1.0, -4.0});
      SGD opt({p}, {.lr = 0.1});
      opt.step();
      const auto v = p.to_vector();
      CHECK(v[0] == doctest::Approx(1.0 - 0.05));
      CHECK(v[1] == doctest::Approx(-2.0 - 0.1));
      CHECK(v[2] == doctest::Approx(0.5 + 0.4));
      CHECK(handle.to_vector() == v);
      CHECK(p.version() > version);
      CHECK(p.is_leaf());
      CHECK(p.requires_grad());
      CHECK(p.dtype() == dtype);
    }
  }

  TEST_CASE("SGD momentum with dampening and weight decay, by hand") {
    // b1 = g1 + wd p0 (no dampening on the first step), then b = m b + (1 - d) (g + wd p).
    const double lr = 0.1, m = 0.9, d = 0.25, wd = 0.5;
    Tensor p = leaf({2.0});
    SGD opt({p}, {.lr = lr, .momentum = m, .dampening = d, .weight_decay = wd});
    double pv = 2.0, buf = 0;
    const std::vector<double> grads = {1.0, -3.0, 0.5, 2.0};
    for (std::size_t k = 0; k < grads.size(); ++k) {
      set_grad(p, {grads[k]});
      opt.step();
      const double g = grads[k] + wd * pv;
      buf = k == 0 ? g : m * buf + (1 - d) * g;
      pv -= lr * buf;
      CHECK(p.item() == doctest::Approx(pv).epsilon(1e-14));
    }
  }

  TEST_CASE("SGD Nesterov, by hand") {
    const double lr = 0.2, m = 0.5;
    Tensor p = leaf({1.0});
    SGD opt({p}, {.lr = lr, .momentum = m, .nesterov = true});
    double pv = 1.0, buf = 0;
    for (int k = 0; k < 3; ++k) {
      const double g = 1.0 + k;
      set_grad(p, {g});
      opt.step();
      buf = k == 0 ? g : m * buf + g;
      pv -= lr * (g + m * buf);
      CHECK(p.item() == doctest::Approx(pv).epsilon(1e-14));
    }
  }

  TEST_CASE("Adam's first step moves each element by lr * g / (|g| + eps)") {
    // With bias correction, m_hat = g and v_hat = g^2 after one step.
    const double lr = 0.01, eps = 1e-3;
    Tensor p = leaf({1.0, 1.0, 1.0});
    set_grad(p, {0.5, -2.0, 1e-3});
    Adam opt({p}, {.lr = lr, .eps = eps});
    opt.step();
    const auto v = p.to_vector();
    CHECK(v[0] == doctest::Approx(1.0 - lr * 0.5 / (0.5 + eps)).epsilon(1e-12));
    CHECK(v[1] == doctest::Approx(1.0 + lr * 2.0 / (2.0 + eps)).epsilon(1e-12));
    CHECK(v[2] == doctest::Approx(1.0 - lr * 1e-3 / (1e-3 + eps)).epsilon(1e-12));
  }

  TEST_CASE("AdamW decays the weights apart from the gradient; Adam folds the decay into it") {
    Tensor p = leaf({2.0, -4.0});
    set_grad(p, {0.0, 0.0});
    AdamW adamw({p}, {.lr = 0.1, .weight_decay = 0.5});
    adamw.step();
    CHECK(p.to_vector() == std::vector<double>{2.0 * 0.95, -4.0 * 0.95});

    Tensor q = leaf({2.0});
    set_grad(q, {0.0});
    Adam adam({q}, {.lr = 0.1, .eps = 0.0, .weight_decay = 0.5});
    adam.step();  // the gradient becomes wd * q = 1, so the first step is -lr
    CHECK(q.item() == doctest::Approx(2.0 - 0.1).epsilon(1e-14));
  }

  TEST_CASE("the fused Adam / AdamW step equals the composite update in tensor ops, step after step") {
    struct Case {
      const char* name;
      AdamOptions o;
      bool decoupled;
    };
    const Case cases[] = {
        {"Adam", {.lr = 0.01}, false},
        {"Adam, L2 weight decay", {.lr = 0.02, .weight_decay = 0.1}, false},
        {"AdamW", {.lr = 0.02, .weight_decay = 0.1}, true},
        {"Adam amsgrad", {.lr = 0.01, .amsgrad = true}, false},
        {"AdamW amsgrad maximize", {.lr = 0.01, .eps = 1e-6, .weight_decay = 0.05, .amsgrad = true, .maximize = true},
         true},
    };
    for (const Case& c : cases) {
      for (DType dt : {kFloat32, kFloat64}) {
        CAPTURE(c.name);
        CAPTURE(dt);
        const AdamOptions& o = c.o;
        Generator gen(31);
        Tensor p = randn({5, 37}, dt, kCPU, &gen).requires_grad_();
        std::unique_ptr<Adam> opt;
        if (c.decoupled)
          opt = std::make_unique<AdamW>(ParamList{p}, AdamWOptions{o.lr, o.beta1, o.beta2, o.eps, o.weight_decay,
                                                                   o.amsgrad, o.maximize});
        else
          opt = std::make_unique<Adam>(ParamList{p}, o);
        // The reference: nn/adam.cpp's composite update, op for op.
        Tensor q = p.detach().clone(), m = zeros_like(q), v = zeros_like(q), vmax = zeros_like(q);
        for (int step = 1; step <= 6; ++step) {
          Tensor g = randn({5, 37}, dt, kCPU, &gen) * (step % 2 == 0 ? 3.0 : 0.1);
          p.set_grad(g);
          opt->step();
          NoGradGuard no_grad;
          Tensor grad = o.maximize ? neg(g) : g;
          if (o.weight_decay != 0) {
            if (c.decoupled)
              q.mul_(1.0 - o.lr * o.weight_decay);
            else
              grad = grad + q * o.weight_decay;
          }
          m.mul_(o.beta1);
          m.add_(grad, 1.0 - o.beta1);
          v.mul_(o.beta2);
          v.add_(grad * (1.0 - o.beta2) * grad);
          const double bias_correction1 = 1.0 - std::pow(o.beta1, step);
          const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(o.beta2, step));
          Tensor second = v;
          if (o.amsgrad) {
            vmax.copy_(maximum(vmax, v));
            second = vmax;
          }
          q.add_(m * -(o.lr / bias_correction1) / (sqrt(second) / bias_correction2_sqrt + o.eps));
          CAPTURE(step);
          CHECK(worst_ratio(p.detach(), q, dt == kFloat32 ? 1e-6 : 1e-14, 1e-30) <= 1.0);
#if defined(__x86_64__)
          // No FMA in any x86-64 clone of the kernel: the very same bits.
          CHECK(bit_identical(p.detach(), q));
#endif
        }
      }
    }
  }

  TEST_CASE("a strided parameter takes the composite path and gets the same update") {
    Generator gen(32);
    Tensor base = randn({4, 6}, kFloat32, kCPU, &gen);
    Tensor dense = base.clone().requires_grad_();
    Tensor strided = base.t().contiguous().t().requires_grad_();  // same values, column-major
    REQUIRE(!strided.is_contiguous());
    Adam a({dense}, {.lr = 0.05}), b({strided}, {.lr = 0.05});
    for (int step = 0; step < 3; ++step) {
      Tensor g = randn({4, 6}, kFloat32, kCPU, &gen);
      dense.set_grad(g);
      strided.set_grad(g);
      a.step();
      b.step();
    }
    CHECK(bit_identical(dense.detach(), strided.detach()));
  }

  TEST_CASE("parameters without a gradient are skipped, their state untouched") {
    Tensor a = leaf({1.0});
    Tensor b = leaf({1.0});
    Adam opt({a, b}, {.lr = 0.1});
    set_grad(a, {1.0});
    opt.step();
    CHECK(b.item() == 1.0);
    const OptimizerState s = opt.state_dict();
    CHECK(s.tensors.contains("state.0.exp_avg"));
    CHECK_FALSE(s.tensors.contains("state.1.exp_avg"));
    CHECK(s.metadata.at("state.0.step") == "1");
    CHECK(s.metadata.count("state.1.step") == 0);
    // b's first update is then its step 1, with full bias correction: a move of exactly lr.
    set_grad(b, {3.0});
    opt.step();
    CHECK(b.item() == doctest::Approx(1.0 - 0.1).epsilon(1e-7));
  }

  TEST_CASE("an update does not record or extend the tape, even from a create_graph gradient") {
    Tensor p = leaf({1.0, 2.0});
    Tensor loss = sum(p * p * p);
    loss.backward(Tensor(), {.retain_graph = true, .create_graph = true});
    REQUIRE(p.grad().requires_grad());
    SGD opt({p}, {.lr = 0.1, .momentum = 0.9});
    opt.step();
    CHECK(p.is_leaf());
    const OptimizerState s = opt.state_dict();
    CHECK_FALSE(s.tensors.at("state.0.momentum_buffer").requires_grad());
    CHECK(p.to_vector() == std::vector<double>{1.0 - 0.1 * 3.0, 2.0 - 0.1 * 12.0});
    // Zero-filling keeps no history either; it also breaks the cycle p -> grad -> tape -> p that
    // create_graph leaves behind (as in PyTorch), which would otherwise leak.
    opt.zero_grad(false);
    CHECK_FALSE(p.grad().requires_grad());
    CHECK(p.grad().to_vector() == std::vector<double>{0.0, 0.0});
  }

  TEST_CASE("zero_grad drops or zero-fills the gradients") {
    Tensor p = leaf({1.0, 2.0});
    SGD opt({p}, {.lr = 0.1});
    set_grad(p, {1.0, 1.0});
    opt.zero_grad(false);
    REQUIRE(p.grad().defined());
    CHECK(p.grad().to_vector() == std::vector<double>{0.0, 0.0});
    opt.zero_grad();
    CHECK_FALSE(p.grad().defined());
    opt.step();  // nothing to do
    CHECK(p.to_vector() == std::vector<double>{1.0, 2.0});
  }

  TEST_CASE("parameter groups have their own hyperparameters and learning rates") {
    Tensor w = leaf({1.0});
    Tensor b = leaf({1.0});
    SGD opt(std::vector<SGDGroup>{{{w}, {.lr = 0.1, .weight_decay = 1.0}}, {{b}, {.lr = 0.01}}});
    CHECK(opt.num_groups() == 2);
    CHECK(opt.lr(1) == 0.01);
    set_grad(w, {1.0});
    set_grad(b, {1.0});
    opt.step();
    CHECK(w.item() == doctest::Approx(1.0 - 0.1 * 2.0));
    CHECK(b.item() == doctest::Approx(1.0 - 0.01));
    opt.set_lr(0.5);
    CHECK(opt.lr(0) == 0.5);
    CHECK(opt.lr(1) == 0.5);
  }

  TEST_CASE("clip_grad_norm_ and clip_grad_value_, by hand") {
    Tensor a = leaf({3.0});
    Tensor b = leaf({0.0, 4.0}, kFloat32);  // dtypes may differ; the norm is taken in float64
    Tensor c = leaf({7.0});                 // no gradient: not part of the norm
    set_grad(a, {3.0});
    set_grad(b, {0.0, -4.0});
    const double total = clip_grad_norm_({a, b, c}, 1.0);
    CHECK(total == doctest::Approx(5.0).epsilon(1e-15));
    const double coef = 1.0 / (5.0 + 1e-6);
    CHECK(a.grad().item() == doctest::Approx(3.0 * coef).epsilon(1e-15));
    CHECK(b.grad().to_vector()[1] == doctest::Approx(-4.0 * coef).epsilon(1e-7));
    CHECK_FALSE(c.grad().defined());

    // Below the limit nothing changes; the norm is still returned.
    set_grad(a, {3.0});
    set_grad(b, {0.0, -4.0});
    CHECK(clip_grad_norm_({a, b}, 10.0, 1.0) == doctest::Approx(7.0));
    CHECK(a.grad().item() == 3.0);
    CHECK(clip_grad_norm_({a, b}, 10.0, std::numeric_limits<double>::infinity()) == 4.0);
    CHECK(clip_grad_norm_({c}, 1.0) == 0.0);

    clip_grad_value_({a, b}, 2.5);
    CHECK(a.grad().item() == 2.5);
    CHECK(b.grad().to_vector() == std::vector<double>{0.0, -2.5});
  }

  TEST_CASE("clip_grad_norm_ on a non-finite gradient: spoilt gradients, or an error when asked") {
    Tensor a = leaf({1.0, 1.0});
    set_grad(a, {std::numeric_limits<double>::infinity(), 1.0});
    CHECK_MG_ERROR(clip_grad_norm_({a}, 1.0, 2.0, true), "clip_grad_norm_", "inf");
    CHECK(a.grad().to_vector()[1] == 1.0);  // the check comes before any scaling
    // As in PyTorch: the scale becomes 0, so the infinite element turns NaN and the finite ones 0.
    clip_grad_norm_({a}, 1.0);
    CHECK(std::isnan(a.grad().to_vector()[0]));
    CHECK(a.grad().to_vector()[1] == 0.0);
    set_grad(a, {std::nan(""), 1.0});
    CHECK(std::isnan(clip_grad_norm_({a}, 1.0)));
    CHECK(std::isnan(a.grad().to_vector()[1]));
  }

  TEST_CASE("schedules, by hand") {
    Tensor p = leaf({0.0});
    SGD opt({p}, {.lr = 1.0});
    SUBCASE("StepLR") {
      StepLR s(opt, 2, 0.5);
      std::vector<double> seen = {opt.lr()};
      for (int k = 0; k < 5; ++k) {
        s.step();
        seen.push_back(opt.lr());
      }
      CHECK(seen == std::vector<double>{1.0, 1.0, 0.5, 0.5, 0.25, 0.25});
    }
    SUBCASE("CosineAnnealingLR") {
      CosineAnnealingLR s(opt, 4, 0.2);
      CHECK(opt.lr() == 1.0);
      s.step();
      s.step();
      CHECK(opt.lr() == doctest::Approx(0.6).epsilon(1e-15));
      s.step();
      s.step();
      CHECK(opt.lr() == doctest::Approx(0.2).epsilon(1e-15));
      CHECK(s.lr_at(1.0, 8) == doctest::Approx(1.0).epsilon(1e-15));
    }
    SUBCASE("LinearWarmup from zero, then cosine decay that stays at eta_min") {
      LinearWarmup s(opt, 4, 0.0, 2, 0.1);
      CHECK(opt.lr() == 0.0);
      std::vector<double> seen;
      for (int k = 0; k < 8; ++k) {
        s.step();
        seen.push_back(opt.lr());
      }
      const std::vector<double> expected = {0.25, 0.5, 0.75, 1.0, 0.55, 0.1, 0.1, 0.1};
      for (std::size_t k = 0; k < expected.size(); ++k) CHECK(seen[k] == doctest::Approx(expected[k]).epsilon(1e-15));
      CHECK(s.last_epoch() == 8);
      CHECK(s.base_lrs() == std::vector<double>{1.0});
    }
  }

  // ---------------------------------------------------------------------------------------------
  // PyTorch fixtures
  // ---------------------------------------------------------------------------------------------

  TEST_CASE("trajectories match torch.optim 1.13") {
    for (const char* suffix : {"f32", "f64"}) {
      const SafetensorsFile file = load_safetensors(fixture(std::string("optim_") + suffix + ".safetensors"));
      const TensorDict& fx = file.tensors;
      const DType dtype = fx.at("init.a").dtype();
      const Tolerance tol = tolerance_for(dtype);
      for (const OptimCase& c : fixture_cases()) {
        INFO("case " << c.name << ", " << suffix);
        const TensorDict params = initial_params(fx);
        auto opt = c.make(params);
        for (int k = 0; k < kSteps; ++k) {
          feed_grads(params, fx, k);
          opt->step();
          for (const auto& n : kNames) {
            INFO("step " << k << ", parameter " << n);
            CHECK(worst_ratio(params.at(n), fx.at(c.name + "." + std::to_string(k) + "." + n), tol.rtol, tol.atol) <= 1.0);
          }
        }
      }
    }
  }

  TEST_CASE("clip_grad_norm_ and clip_grad_value_ match PyTorch") {
    struct ClipCase {
      const char* name;
      int step;
      double max_norm;
      double norm_type;
    };
    const ClipCase cases[] = {
        {"l2", 0, 1.0, 2.0},
        {"inf", 1, 0.5, std::numeric_limits<double>::infinity()},
        {"l1_unclipped", 0, 100.0, 1.0},
        {"p3", 4, 2.0, 3.0},
    };
    for (const char* suffix : {"f32", "f64"}) {
      const TensorDict fx = load_safetensors(fixture(std::string("optim_") + suffix + ".safetensors")).tensors;
      const Tolerance tol = tolerance_for(fx.at("init.a").dtype());
      for (const ClipCase& c : cases) {
        INFO("clip case " << c.name << ", " << suffix);
        const TensorDict params = initial_params(fx);
        feed_grads(params, fx, c.step);
        const double total = clip_grad_norm_(params, c.max_norm, c.norm_type);
        const double expected = fx.at(std::string("clip.") + c.name + ".total").item();
        CHECK(std::abs(total - expected) <= tol.rtol * std::abs(expected) + tol.atol);
        for (const auto& [n, p] : params) {
          const Tensor want = fx.get(std::string("clip.") + c.name + "." + n);
          CHECK(p.grad().defined() == want.defined());
          if (want.defined()) CHECK(worst_ratio(p.grad(), want, tol.rtol, tol.atol) <= 1.0);
        }
      }
      const TensorDict params = initial_params(fx);
      for (const auto& [n, p] : params) p.set_grad(fx.at("grad.2." + n).clone());
      clip_grad_value_(params, 0.3);
      for (const auto& [n, p] : params) CHECK(worst_ratio(p.grad(), fx.at("clip_value." + n), 0, 0) <= 1.0);
    }
  }

  TEST_CASE("schedules match PyTorch's StepLR, CosineAnnealingLR, LinearLR and LinearLR + cosine") {
    const TensorDict fx = load_safetensors(fixture("optim_lr.safetensors")).tensors;
    using MakeScheduler = std::function<std::unique_ptr<LRScheduler>(Optimizer&)>;
    const std::vector<std::pair<std::string, MakeScheduler>> cases = {
        {"step", [](Optimizer& o) { return std::make_unique<StepLR>(o, 3, 0.3); }},
        {"cosine", [](Optimizer& o) { return std::make_unique<CosineAnnealingLR>(o, 8, 0.001); }},
        {"warmup", [](Optimizer& o) { return std::make_unique<LinearWarmup>(o, 4, 0.25); }},
        {"warmup_cosine", [](Optimizer& o) { return std::make_unique<LinearWarmup>(o, 3, 0.1, 9, 0.0005); }},
    };
    for (const auto& [name, make] : cases) {
      INFO("schedule " << name);
      Tensor w0 = leaf({0.0});
      Tensor w1 = leaf({0.0});
      SGD opt(std::vector<SGDGroup>{{{w0}, {.lr = 0.1}}, {{w1}, {.lr = 0.02}}});
      auto sched = make(opt);
      const std::vector<double> expected = fx.at("lr." + name).values_as_double();  // [13, 2]
      for (int epoch = 0; epoch <= 12; ++epoch) {
        if (epoch > 0) sched->step();
        for (std::size_t g = 0; g < 2; ++g) {
          INFO("epoch " << epoch << ", group " << g);
          const double want = expected[static_cast<std::size_t>(epoch) * 2 + g];
          CHECK(std::abs(opt.lr(g) - want) <= 1e-12 * want + 1e-16);
        }
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Checkpoints
  // ---------------------------------------------------------------------------------------------

  TEST_CASE("a checkpoint after 3 steps resumes bit for bit: 3 + 2 steps equal 5") {
    TempDir dir;
    for (const char* suffix : {"f32", "f64"}) {
      const TensorDict fx = load_safetensors(fixture(std::string("optim_") + suffix + ".safetensors")).tensors;
      for (const OptimCase& c : fixture_cases()) {
        INFO("case " << c.name << ", " << suffix);
        // Uninterrupted, with a schedule so that the learning rate differs at every step.
        const TensorDict straight = initial_params(fx);
        {
          auto opt = c.make(straight);
          CosineAnnealingLR sched(*opt, 4, 1e-4);
          for (int k = 0; k < kSteps; ++k) {
            feed_grads(straight, fx, k);
            opt->step();
            sched.step();
          }
        }

        const std::string path = dir.file(c.name + "_" + suffix + ".safetensors");
        {
          const TensorDict params = initial_params(fx);
          auto opt = c.make(params);
          CosineAnnealingLR sched(*opt, 4, 1e-4);
          for (int k = 0; k < 3; ++k) {
            feed_grads(params, fx, k);
            opt->step();
            sched.step();
          }
          TensorDict tensors;
          for (const auto& [n, p] : params) tensors.insert("model." + n, p.detach());
          const OptimizerState s = opt->state_dict("optimizer.");
          for (const auto& [k, t] : s.tensors) tensors.insert(k, t);
          std::map<std::string, std::string> metadata = s.metadata;
          metadata.merge(sched.state_dict("scheduler."));
          save_safetensors(path, tensors, metadata);
        }

        // A fresh process would build everything anew, with settings that need not match.
        const SafetensorsFile file = load_safetensors(path);
        TensorDict resumed;
        for (const auto& n : kNames) {
          Tensor p = zeros_like(fx.at("init." + n));
          p.requires_grad_();
          resumed.insert(n, p);
        }
        {
          NoGradGuard no_grad;
          for (const auto& [n, p] : resumed) {
            Tensor target = p;
            target.copy_(file.tensors.at("model." + n));
          }
        }
        auto opt = c.make(resumed);
        opt->set_lr(123.0);
        CosineAnnealingLR sched(*opt, 1000, 0.5);
        opt->load_state_dict(file.tensors, file.metadata, "optimizer.");
        sched.load_state_dict(file.metadata, "scheduler.");
        CHECK(sched.last_epoch() == 3);
        for (int k = 3; k < kSteps; ++k) {
          feed_grads(resumed, fx, k);
          opt->step();
          sched.step();
        }
        for (const auto& n : kNames) {
          INFO("parameter " << n);
          CHECK(bit_identical(resumed.at(n), straight.at(n)));
        }
      }
    }
  }

  TEST_CASE("state_dict numbers parameters over all groups and keeps their names") {
    Tensor w = leaf({1.0, 2.0});
    Tensor b = leaf({3.0});
    SGD opt(std::vector<SGDGroup>{{TensorDict{{"fc.weight", w}}, {.lr = 0.1, .momentum = 0.9}},
                                  {TensorDict{{"fc.bias", b}}, {.lr = 0.2, .momentum = 0.5, .nesterov = true}}});
    set_grad(w, {1.0, 1.0});
    set_grad(b, {1.0});
    opt.step();
    const OptimizerState s = opt.state_dict("opt.");
    CHECK(s.tensors.keys() == std::vector<std::string>{"opt.state.0.momentum_buffer", "opt.state.1.momentum_buffer"});
    CHECK(s.metadata.at("opt.type") == "SGD");
    CHECK(s.metadata.at("opt.param_groups") == "2");
    CHECK(s.metadata.at("opt.param_groups.1.lr") == "0.2");
    CHECK(s.metadata.at("opt.param_groups.1.nesterov") == "true");
    CHECK(s.metadata.at("opt.param_names.1") == "fc.bias");
    CHECK(s.metadata.count("opt.state.0.step") == 0);  // SGD keeps no step count
  }

  // ---------------------------------------------------------------------------------------------
  // Errors
  // ---------------------------------------------------------------------------------------------

  TEST_CASE("bad settings and parameter lists are errors that say what is wrong") {
    Tensor p = leaf({1.0});
    CHECK_MG_ERROR(SGD({p}, {.lr = -0.1}), "SGD", "learning rate", "-0.1");
    CHECK_MG_ERROR(SGD({p}, {.lr = std::nan("")}), "SGD", "learning rate");
    CHECK_MG_ERROR(SGD({p}, {.lr = 0.1, .momentum = -1}), "SGD", "momentum", "-1");
    CHECK_MG_ERROR(SGD({p}, {.lr = 0.1, .nesterov = true}), "SGD", "Nesterov", "momentum > 0");
    CHECK_MG_ERROR(SGD({p}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}), "Nesterov", "dampening");
    CHECK_MG_ERROR(Adam({p}, {.beta1 = 1.0}), "Adam", "beta1", "[0, 1)");
    CHECK_MG_ERROR(Adam({p}, {.beta2 = -0.5}), "Adam", "beta2");
    CHECK_MG_ERROR(AdamW({p}, {.eps = -1e-8}), "AdamW", "eps");
    CHECK_MG_ERROR(AdamW({p}, {.weight_decay = -1}), "AdamW", "weight_decay");
    CHECK_MG_ERROR(SGD(std::vector<Tensor>{}, {.lr = 0.1}), "SGD", "empty parameter list");
    CHECK_MG_ERROR(SGD({p, p}, {.lr = 0.1}), "SGD", "more than once");
    CHECK_MG_ERROR(SGD({p * 2.0}, {.lr = 0.1}), "SGD", "not a leaf");
    CHECK_MG_ERROR(SGD({tensor(std::vector<int64_t>{1}, {1})}, {.lr = 0.1}), "SGD", "int64", "floating");
    CHECK_MG_ERROR(SGD({Tensor()}, {.lr = 0.1}), "SGD", "undefined");
    CHECK_MG_ERROR(SGD(std::vector<SGDGroup>{{{p}, {.lr = 0.1}}, {{leaf({2.0})}, {.lr = -1}}}), "SGD", "group 1",
                   "learning rate");

    SGD opt({p}, {.lr = 0.1});
    CHECK_MG_ERROR(opt.set_lr(-1.0), "SGD", "learning rate", "-1");
    CHECK_MG_ERROR(opt.set_lr(0.1, 3), "SGD", "no parameter group 3");
    CHECK_MG_ERROR(StepLR(opt, 0), "StepLR", "step_size", "0");
    CHECK_MG_ERROR(CosineAnnealingLR(opt, 10, -1.0), "CosineAnnealingLR", "eta_min");
    CHECK_MG_ERROR(LinearWarmup(opt, 5, 1.5), "LinearWarmup", "start_factor", "1.5");
    CHECK_MG_ERROR(clip_grad_norm_({p}, 1.0, -2.0), "clip_grad_norm_", "norm_type");
    CHECK_MG_ERROR(clip_grad_value_({p}, -1.0), "clip_grad_value_", "clip_value");
  }

  TEST_CASE("loading a state that does not fit is an error, and changes nothing") {
    Tensor a = leaf({1.0, 2.0, 3.0});
    Tensor b = leaf({4.0});
    Adam source(TensorDict{{"a", a}, {"b", b}}, {.lr = 0.01, .amsgrad = true});
    set_grad(a, {1.0, 1.0, 1.0});
    set_grad(b, {1.0});
    source.step();
    const OptimizerState good = source.state_dict();

    // The target has stepped once too, with other settings: a failed load must leave all of it.
    Tensor x = leaf({1.0, 2.0, 3.0});
    Tensor y = leaf({4.0});
    Adam target(TensorDict{{"a", x}, {"b", y}}, {.lr = 0.5});
    set_grad(x, {1.0, 1.0, 1.0});
    set_grad(y, {1.0});
    target.step();
    const OptimizerState before = target.state_dict();
    auto unchanged = [&] {
      const OptimizerState now = target.state_dict();
      CHECK(now.metadata == before.metadata);
      CHECK(now.tensors.keys() == before.tensors.keys());
      for (const auto& [k, t] : before.tensors) CHECK(bit_identical(now.tensors.at(k), t));
    };

    SUBCASE("another parameter set: more parameters") {
      Tensor z = leaf({0.0});
      Adam three({x, y, z}, {});
      CHECK_MG_ERROR(three.load_state_dict(good), "Adam.load_state_dict", "group 0 has 2 parameters in the state but 3",
                     "another parameter set");
    }
    SUBCASE("another parameter set: a shape differs") {
      Tensor wide = leaf({1.0, 2.0, 3.0, 4.0});
      Adam other({wide, y}, {});
      CHECK_MG_ERROR(other.load_state_dict(good), "Adam.load_state_dict", "state.0.exp_avg", "[3]", "[4]",
                     "another parameter set");
    }
    SUBCASE("another parameter set: the names differ") {
      Adam other(TensorDict{{"w", x}, {"b", y}}, {});
      CHECK_MG_ERROR(other.load_state_dict(good), "Adam.load_state_dict", "'w'", "'a'", "another parameter set");
    }
    SUBCASE("another optimizer's state") {
      SGD sgd({x, y}, {.lr = 0.1});
      CHECK_MG_ERROR(sgd.load_state_dict(good), "SGD.load_state_dict", "Adam optimizer, not SGD");
      AdamW adamw({x, y}, {});
      CHECK_MG_ERROR(adamw.load_state_dict(good), "AdamW.load_state_dict", "Adam optimizer, not AdamW");
    }
    SUBCASE("a missing tensor") {
      OptimizerState s = good;
      s.tensors.erase("state.1.exp_avg_sq");
      CHECK_MG_ERROR(target.load_state_dict(s), "Adam.load_state_dict", "state.1.exp_avg_sq");
      unchanged();
    }
    SUBCASE("an unknown tensor") {
      OptimizerState s = good;
      s.tensors.insert("state.0.momentum_buffer", zeros({3}, kFloat64));
      CHECK_MG_ERROR(target.load_state_dict(s), "Adam.load_state_dict", "momentum_buffer", "exp_avg");
      unchanged();
    }
    SUBCASE("a tensor for a parameter that does not exist") {
      OptimizerState s = good;
      s.tensors.insert("state.7.exp_avg", zeros({3}, kFloat64));
      CHECK_MG_ERROR(target.load_state_dict(s), "Adam.load_state_dict", "state.7.exp_avg", "parameter #7");
      unchanged();
    }
    SUBCASE("a malformed number") {
      OptimizerState s = good;
      s.metadata["param_groups.0.beta2"] = "0.999x";
      CHECK_MG_ERROR(target.load_state_dict(s), "Adam.load_state_dict", "param_groups.0.beta2", "0.999x", "not a number");
      unchanged();
    }
    SUBCASE("an invalid hyperparameter") {
      OptimizerState s = good;
      s.metadata["param_groups.0.lr"] = "-3";
      CHECK_MG_ERROR(target.load_state_dict(s), "Adam.load_state_dict", "learning rate", "-3");
      unchanged();
    }
    SUBCASE("an unexpected entry") {
      OptimizerState s = good;
      s.metadata["param_groups.0.momentum"] = "0.9";
      CHECK_MG_ERROR(target.load_state_dict(s), "Adam.load_state_dict", "unexpected entry", "param_groups.0.momentum");
      unchanged();
    }
    SUBCASE("a step count missing or not positive") {
      OptimizerState s = good;
      s.metadata.erase("state.0.step");
      CHECK_MG_ERROR(target.load_state_dict(s), "Adam.load_state_dict", "no step count", "state.0.step");
      s.metadata["state.0.step"] = "0";
      CHECK_MG_ERROR(target.load_state_dict(s), "Adam.load_state_dict", "state.0.step", "positive");
      unchanged();
    }
    SUBCASE("nothing under the prefix") {
      CHECK_MG_ERROR(target.load_state_dict(good, "optimizer."), "Adam.load_state_dict", "optimizer.type");
      unchanged();
    }
    SUBCASE("the good state loads, settings included") {
      target.load_state_dict(good);
      CHECK(target.options().lr == 0.01);
      CHECK(target.options().amsgrad);
      const OptimizerState now = target.state_dict();
      CHECK(now.metadata == good.metadata);
      for (const auto& [k, t] : good.tensors) CHECK(bit_identical(now.tensors.at(k), t));
      // Copies, not shared: stepping the target leaves the source's buffers alone.
      const Tensor before_step = good.tensors.at("state.0.exp_avg").clone();
      target.step();
      CHECK(bit_identical(good.tensors.at("state.0.exp_avg"), before_step));
    }
  }

  TEST_CASE("scheduler state: round trip and errors") {
    Tensor p = leaf({0.0});
    SGD opt({p}, {.lr = 1.0});
    LinearWarmup s(opt, 4, 0.1, 6, 0.01);
    for (int k = 0; k < 5; ++k) s.step();
    const auto state = s.state_dict("sched.");
    CHECK(state.at("sched.type") == "LinearWarmup");
    CHECK(state.at("sched.last_epoch") == "5");

    SGD opt2({leaf({0.0})}, {.lr = 3.0});
    LinearWarmup s2(opt2, 1, 1.0);
    s2.load_state_dict(state, "sched.");
    CHECK(s2.last_epoch() == 5);
    CHECK(opt2.lr() == opt.lr());
    s.step();
    s2.step();
    CHECK(opt2.lr() == opt.lr());

    StepLR step(opt2, 2);
    CHECK_MG_ERROR(step.load_state_dict(state, "sched."), "StepLR.load_state_dict", "LinearWarmup scheduler, not StepLR");
    auto bad = state;
    bad["sched.last_epoch"] = "-2";
    CHECK_MG_ERROR(s2.load_state_dict(bad, "sched."), "LinearWarmup.load_state_dict", "last_epoch", "-2");
    bad = state;
    bad["sched.num_groups"] = "2";
    CHECK_MG_ERROR(s2.load_state_dict(bad, "sched."), "LinearWarmup.load_state_dict", "2 parameter groups");
    bad = state;
    bad["sched.start_factor"] = "7";
    CHECK_MG_ERROR(s2.load_state_dict(bad, "sched."), "LinearWarmup.load_state_dict", "start_factor", "7");
    bad = state;
    bad["sched.gamma"] = "0.1";
    CHECK_MG_ERROR(s2.load_state_dict(bad, "sched."), "unexpected entry", "sched.gamma");
    CHECK(s2.last_epoch() == 6);
  }

  TEST_CASE("hyperparameters survive the text form bit for bit") {
    Tensor p = leaf({0.0});
    const double lr = 0.1 + 0.2;  // 0.30000000000000004: needs all 17 digits
    const double eps = std::nextafter(1e-8, 1.0);
    Adam a({p}, {.lr = lr, .beta2 = 0.1 * 3, .eps = eps});
    Adam b({leaf({0.0})}, {});
    b.load_state_dict(a.state_dict());
    CHECK(b.options().lr == lr);
    CHECK(b.options().beta2 == 0.1 * 3);
    CHECK(b.options().eps == eps);
  }
}
