// autograd/checkpoint.h: a checkpointed segment gives the gradients of the plain computation
// (first and second order), runs again only when backward reaches it, replays
// default_generator(), and turns what it cannot reproduce into errors.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "../autograd/checkpoint.h"
#include "../autograd/grad.h"
#include "../autograd/grad_mode.h"
#include "../autograd/gradcheck.h"
#include "../autograd/ops.h"
#include "../tensor/creation.h"
#include "../tensor/memory_stats.h"
#include "check_error.h"

using namespace mg;

namespace {

// Two outputs from three inputs, one of which never needs a gradient; the second output passes
// an input through unchanged.
TensorList segment(const TensorList& in) {
  Tensor h = tanh(matmul(in[0], in[1])) * in[2];
  return {sin(h).sum({1}), in[1]};
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  REQUIRE(x.size() == y.size());
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]));
  return worst;
}

// x <- x - 0.1 * d/dx sum(sin(x)^2 * w), with the inner gradient recorded: a segment whose
// forward itself needs autograd, the shape of a MAML inner step.
TensorList inner_step(const TensorList& in) {
  const bool recording = GradMode::is_enabled();
  GradModeGuard on(true);
  Tensor x = in[0].requires_grad() ? in[0] : in[0].detach().requires_grad_();
  Tensor inner = (square(sin(x)) * in[1]).sum();
  Tensor g = grad({inner}, {x}, {}, {.create_graph = recording})[0];
  GradModeGuard mode(recording);
  return {x - g * 0.1};
}

}  // namespace

TEST_SUITE("autograd.checkpoint") {
  TEST_CASE("gradients equal those of the plain computation; the segment runs again only in backward") {
    Generator gen(1);
    Tensor a = randn({4, 3}, kFloat64, kCPU, &gen).requires_grad_();
    Tensor b = randn({3, 5}, kFloat64, kCPU, &gen).requires_grad_();
    Tensor c = randn({4, 5}, kFloat64, kCPU, &gen);  // a constant
    int calls = 0;
    TensorList out = checkpoint(
        [&](const TensorList& in) {
          ++calls;
          return segment(in);
        },
        {a, b, c});
    CHECK(calls == 1);
    REQUIRE(out.size() == 2);
    CHECK(out[0].requires_grad());
    CHECK(out[1].requires_grad());
    CHECK_FALSE(out[1].same(b));  // a new handle: b's own history is untouched
    CHECK(b.is_leaf());
    Tensor loss = (out[0] * out[0]).sum() + (out[1] * 3.0).sum();
    TensorList got = grad({loss}, {a, b});
    CHECK(calls == 2);

    TensorList plain = segment({a, b, c});
    TensorList want = grad({(plain[0] * plain[0]).sum() + (plain[1] * 3.0).sum()}, {a, b});
    CHECK(max_abs_diff(got[0], want[0]) < 1e-14);
    CHECK(max_abs_diff(got[1], want[1]) < 1e-14);

    // Only one output used: the other gets no gradient, and the segment still runs once.
    TensorList again = checkpoint(segment, {a, b, c});
    CHECK(max_abs_diff(grad({again[1].sum()}, {b})[0], ones_like(b)) == 0.0);
  }

  TEST_CASE("a segment that differentiates inside (the engine runs re-entrantly) gives exact second-order gradients") {
    Generator gen(2);
    Tensor x0 = randn({6}, kFloat64, kCPU, &gen).requires_grad_();
    Tensor w = (rand({6}, kFloat64, kCPU, &gen) + 0.5).requires_grad_();
    auto unrolled = [&](bool use_checkpoint) {
      Tensor x = x0;
      for (int s = 0; s < 3; ++s) x = use_checkpoint ? checkpoint(inner_step, {x, w})[0] : inner_step({x, w})[0];
      return (x * x).sum();
    };
    TensorList got = grad({unrolled(true)}, {x0, w});
    TensorList want = grad({unrolled(false)}, {x0, w});
    CHECK(max_abs_diff(got[0], want[0]) < 1e-13);
    CHECK(max_abs_diff(got[1], want[1]) < 1e-13);
  }

  TEST_CASE("differentiating a checkpointed backward again (create_graph) is exact") {
    Generator gen(3);
    Tensor a = randn({3, 2}, kFloat64, kCPU, &gen).requires_grad_();
    Tensor b = randn({2, 4}, kFloat64, kCPU, &gen).requires_grad_();
    Tensor c = randn({3, 4}, kFloat64, kCPU, &gen);
    auto f = [&](const TensorList& in) {
      TensorList out = checkpoint(segment, {in[0], in[1], c});
      return (out[0] * out[0]).sum() + (out[1] * out[1] * out[1]).sum();
    };
    CHECK(gradcheck(f, {a, b}));
    GradcheckResult second = gradgradcheck(f, {a, b});
    INFO(second.message);
    CHECK(second);
    // Through the re-entrant segment too: Hessian-vector products with and without checkpointing.
    Tensor x = randn({5}, kFloat64, kCPU, &gen).requires_grad_();
    Tensor w = (rand({5}, kFloat64, kCPU, &gen) + 0.5).requires_grad_();
    Tensor v = randn({5}, kFloat64, kCPU, &gen);
    auto hv = [&](bool use_checkpoint) {
      return hvp(
          [&](const TensorList& in) {
            Tensor y = use_checkpoint ? checkpoint(inner_step, {in[0], w})[0] : inner_step({in[0], w})[0];
            return (y * y * y).sum();
          },
          {x}, {v})[0];
    };
    CHECK(max_abs_diff(hv(true), hv(false)) < 1e-12);
  }

  TEST_CASE("the tape holds the inputs, not the segment's intermediates") {
    Generator gen(4);
    Tensor x = randn({256, 256}, kFloat32, kCPU, &gen).requires_grad_();
    auto deep = [](const TensorList& in) {
      Tensor h = in[0];
      for (int i = 0; i < 8; ++i) h = tanh(h * 1.01);  // each saves a 256 KiB output
      return TensorList{h};
    };
    const int64_t base = memory_stats().allocated;
    Tensor plain = deep({x})[0];
    const int64_t plain_bytes = memory_stats().allocated - base;
    plain = Tensor();
    Tensor kept = checkpoint(deep, {x})[0];
    const int64_t checkpointed_bytes = memory_stats().allocated - base;
    MESSAGE("8 tanh layers on 256x256: ", plain_bytes, " bytes held without checkpointing, ", checkpointed_bytes,
            " with");
    CHECK(checkpointed_bytes == 256 * 256 * 4);  // the output alone
    CHECK(plain_bytes >= 8 * 256 * 256 * 4);
  }

  TEST_CASE("random numbers from default_generator() are replayed, and its state is left alone") {
    manual_seed(5);
    Tensor x = tensor({0.1, 0.2, 0.3, 0.4}, kFloat64).requires_grad_();
    auto noisy = [](const TensorList& in) { return TensorList{in[0] * rand({4}, kFloat64) * in[0]}; };
    const Generator start = default_generator();
    Tensor y = checkpoint(noisy, {x})[0];
    const Generator after_forward = default_generator();
    CHECK(after_forward.offset() > start.offset());
    Tensor g = grad({y.sum()}, {x})[0];
    CHECK(default_generator().offset() == after_forward.offset());
    // d/dx (x * r * x) = 2 r x with the forward's r = y / x^2.
    CHECK(max_abs_diff(g, y / x * 2.0) < 1e-14);
  }

  TEST_CASE("replay_random off: the recomputation sees the generator as it is, and leaves it alone") {
    manual_seed(6);
    Tensor x = tensor({0.5, 1.5}, kFloat64).requires_grad_();
    std::vector<uint64_t> seen;  // the default generator's offset at each run of fn
    auto square = [&](const TensorList& in) {
      seen.push_back(default_generator().offset());
      return TensorList{in[0] * in[0]};
    };
    Tensor y = checkpoint(square, {x}, {.replay_random = false})[0];
    (void)rand({3}, kFloat64);  // moves the generator on between the runs
    const uint64_t now = default_generator().offset();
    Tensor g = grad({y.sum()}, {x})[0];
    REQUIRE(seen.size() == 2);
    CHECK(seen[1] == now);  // not put back to seen[0]
    CHECK(seen[0] != now);
    CHECK(default_generator().offset() == now);
    CHECK(max_abs_diff(g, x * 2.0) < 1e-15);
  }

  TEST_CASE("what cannot be recomputed is an error, not a wrong gradient") {
    Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
    SUBCASE("randomness from another generator") {
      Generator own(9);
      Tensor y = checkpoint([&](const TensorList& in) { return TensorList{in[0] * rand({2}, kFloat64, kCPU, &own)}; },
                            {x}, {.name = "noisy segment"})[0];
      CHECK_MG_ERROR(grad({y.sum()}, {x}), "noisy segment", "different values for output 0", "not deterministic",
                     "default_generator()");
    }
    SUBCASE("a captured tensor that requires grad, whose gradient would be lost") {
      Tensor w = tensor({3.0, 4.0}, kFloat64).requires_grad_();
      Tensor y = checkpoint([&](const TensorList& in) { return TensorList{in[0] * w}; }, {x})[0];
      CHECK_MG_ERROR(grad({y.sum()}, {x}), "checkpoint", "depend on a leaf ([2] float64)", "not one of the inputs");
      Tensor v = w * 2.0;
      Tensor z = checkpoint([&](const TensorList& in) { return TensorList{in[0] * v}; }, {x})[0];
      CHECK_MG_ERROR(grad({z.sum()}, {x}), "checkpoint", "made by 'mul'", "pass it in inputs");
    }
    SUBCASE("an input modified in place before backward") {
      Tensor z = x * 1.0;
      Tensor y = checkpoint([](const TensorList& in) { return TensorList{in[0] * in[0]}; }, {z})[0];
      {
        NoGradGuard no_grad;
        z.add_(1.0);
      }
      CHECK_MG_ERROR(grad({y.sum()}, {x}), "checkpoint", "modified in place");
    }
    SUBCASE("a second backward without retain_graph") {
      Tensor y = checkpoint([](const TensorList& in) { return TensorList{in[0] * in[0]}; }, {x})[0];
      grad({y.sum()}, {x});
      CHECK_MG_ERROR(grad({y.sum()}, {x}), "checkpoint", "already freed", "retain_graph");
    }
    SUBCASE("twice with retain_graph") {
      Tensor y = checkpoint([](const TensorList& in) { return TensorList{in[0] * in[0]}; }, {x})[0];
      Tensor first = grad({y.sum()}, {x}, {}, {.retain_graph = true})[0];
      Tensor second = grad({y.sum()}, {x})[0];
      CHECK(max_abs_diff(first, second) == 0.0);
      CHECK(max_abs_diff(first, x * 2.0) == 0.0);
    }
  }

  TEST_CASE("nothing is recorded without grad mode or an input that requires grad") {
    Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
    auto square_it = [](const TensorList& in) { return TensorList{in[0] * in[0]}; };
    {
      NoGradGuard no_grad;
      CHECK_FALSE(checkpoint(square_it, {x})[0].requires_grad());
    }
    CHECK_FALSE(checkpoint(square_it, {x.detach()})[0].requires_grad());
  }
}
