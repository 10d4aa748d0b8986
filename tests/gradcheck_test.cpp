// One table (gradcheck_table.h) drives gradcheck and gradgradcheck (float64) for every op in
// MG_DIFFERENTIABLE_OPS, each at several shapes: broadcasting, 0-d, non-contiguous inputs,
// negative dims, keepdim, repeated indices... An op of op_list.h without an entry there is a
// failing test.
#include <doctest/doctest.h>

#include <cstdint>
#include <functional>
#include <iostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "../autograd/grad.h"
#include "../autograd/gradcheck.h"
#include "../autograd/op_list.h"
#include "../autograd/ops.h"
#include "../tensor/build_info.h"
#include "../tensor/creation.h"

#include "gradcheck_table.h"

using namespace mg;
using namespace mg::testing;

TEST_SUITE("autograd.gradcheck") {
  TEST_CASE("every differentiable op has a gradcheck entry") {
    std::set<int> covered;
    for (const GradcheckEntry& e : table()) covered.insert(static_cast<int>(e.id));
    for (std::size_t i = 0; i < kNumDifferentiableOps; ++i) {
      const OpId id = static_cast<OpId>(i);
      CHECK_MESSAGE(covered.count(static_cast<int>(i)) == 1,
                    "op '" << std::string(op_name(id)) << "' has no entry in the gradcheck table");
    }
  }

  TEST_CASE("gradcheck and gradgradcheck pass for every entry") {
    std::set<int> ops;
    int cases = 0;
    for (const GradcheckEntry& e : table()) {
      const std::string label = std::string(op_name(e.id)) + " / " + e.case_name;
      INFO(label);
      ops.insert(static_cast<int>(e.id));
      ++cases;
      try {
        const TensorList inputs = e.make_inputs();
        GradcheckResult first = gradcheck(e.f, inputs, e.options);
        CHECK_MESSAGE(first.ok, "gradcheck: " << first.message);
        GradcheckResult second = gradgradcheck(e.f, inputs, e.options);
        CHECK_MESSAGE(second.ok, "gradgradcheck: " << second.message);
      } catch (const Error& err) {
        FAIL_CHECK("threw mg::Error: " << err.what());
      } catch (const std::exception& err) {
        FAIL_CHECK("threw std::exception: " << err.what());
      }
    }
    MESSAGE("gradcheck + gradgradcheck: " << ops.size() << " ops, " << cases << " cases");
    CHECK(ops.size() == kNumDifferentiableOps);
  }

  TEST_CASE("the non-contiguous leaves of the table really are strided views") {
    Tensor t = leafT(N({3, 2}, 98));
    CHECK(t.is_leaf());
    CHECK(t.requires_grad());
    CHECK_FALSE(t.is_contiguous());
    CHECK(t.shape() == Shape{2, 3});
    Tensor s = leafS(N({2, 7}, 99));
    CHECK(s.is_leaf());
    CHECK_FALSE(s.is_contiguous());
    CHECK(s.shape() == Shape{2, 3});
    CHECK(s.offset() == 1);
    CHECK(s.strides() == Strides{7, 2});
  }

  TEST_CASE("gradcheck restores the inputs it perturbs") {
    Tensor x = N({2, 3}, 90).transpose(0, 1).detach().requires_grad_();
    const std::vector<double> before = x.values_as_double();
    CHECK(gradcheck([](const TensorList& in) { return exp(in[0]); }, {x}).ok);
    CHECK(x.values_as_double() == before);
  }

  TEST_CASE("gradcheck reports a wrong first derivative") {
    // f(x) = x * detach(x): the value is x^2 (numeric derivative 2x) but the tape sees only the
    // first factor, so the analytic derivative is x.
    Tensor x = leaf(P({2, 3}, 91));
    auto wrong = [](const TensorList& in) { return in[0] * in[0].detach(); };
    GradcheckResult r = gradcheck(wrong, {x});
    CHECK_FALSE(r.ok);
    CHECK_FALSE(static_cast<bool>(r));
    CHECK(r.max_abs_error > 0.4);  // |x| >= 0.5, so the error is at least 0.5 somewhere
    CHECK(r.message.find("mismatch") != std::string::npos);
    CHECK(r.message.find("[2,3]") != std::string::npos);

    // A gradient of zero where the true one is not (the whole function detached from x's tape
    // but for one term) is also caught.
    auto half_detached = [](const TensorList& in) { return exp(in[0].detach()) + in[0] * 0.0; };
    CHECK_FALSE(gradcheck(half_detached, {x}).ok);
  }

  TEST_CASE("gradcheck passes a correct derivative with a small error") {
    Tensor x = leaf(N({3, 2}, 92));
    Tensor y = leaf(N({2, 4}, 93));
    GradcheckResult r = gradcheck([](const TensorList& in) { return tanh(matmul(in[0], in[1])); }, {x, y});
    CHECK(r.ok);
    CHECK(r.max_abs_error < 1e-6);
    CHECK(r.message.empty());
  }

  TEST_CASE("gradgradcheck reports a wrong second derivative that gradcheck cannot see") {
    // f(x) = 2 d x - d^2 with d = detach(x): value x^2 and first derivative 2d = 2x, both right,
    // but the first derivative does not depend on x on the tape, so the second derivative is 0
    // instead of 2.
    Tensor x = leaf(N({4}, 94));
    auto f = [](const TensorList& in) {
      Tensor d = in[0].detach();
      return 2.0 * d * in[0] - d * d;
    };
    CHECK(gradcheck(f, {x}).ok);
    GradcheckResult r = gradgradcheck(f, {x});
    CHECK_FALSE(r.ok);
    CHECK(r.message.find("mismatch") != std::string::npos);
  }

  TEST_CASE("gradcheck rejects inputs it cannot check") {
    auto f = [](const TensorList& in) { return in[0] * 2.0; };
    // float32 inputs
    Tensor x32 = randn({3}, kFloat32).requires_grad_();
    CHECK_THROWS_AS(gradcheck(f, {x32}), Error);
    // nothing requires grad
    CHECK_THROWS_AS(gradcheck(f, {N({3}, 95)}), Error);
    // an expanded view: one storage element stands for several
    Tensor expanded = N({3, 1}, 96).expand({3, 4}).detach().requires_grad_();
    CHECK_THROWS_AS(gradcheck(f, {expanded}), Error);
    // f returning float32
    CHECK_THROWS_AS(gradcheck([](const TensorList& in) { return in[0].to(kFloat32); }, {leaf(N({3}, 97))}), Error);
  }
}
