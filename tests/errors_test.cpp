// Bad input becomes an mg::Error whose message names the op and the shapes, dtypes and devices
// involved; edge cases that are not errors (zero-size tensors) work.
#include <doctest/doctest.h>

#include "check_error.h"

#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "../autograd/grad.h"
#include "../autograd/grad_mode.h"
#include "../autograd/ops.h"
#include "../tensor/build_info.h"
#include "../tensor/creation.h"
#include "../tensor/device_graph.h"

namespace {

using namespace mg;

Tensor I(const std::vector<int64_t>& values, const Shape& shape) { return tensor(values, shape); }
Tensor F(const Shape& shape, DType dtype = kFloat32) { return ones(shape, dtype); }
Tensor leaf(const Shape& shape, DType dtype = kFloat64) { return randn(shape, dtype).requires_grad_(); }

}  // namespace

TEST_SUITE("errors") {
  TEST_CASE("the helper itself: no throw and the wrong substring are caught") {
    // Sanity of the doctest idiom the brief suggests, against a message we control.
    CHECK_THROWS_WITH_AS(add(F({3, 4}), F({2, 3})), doctest::Contains("[3,4]"), Error);
    CHECK_NOTHROW(add(F({3, 4}), F({4})));
  }

  TEST_CASE("broadcasting shape mismatch") {
    CHECK_MG_ERROR(add(F({3, 4}), F({2, 3})), "add", "[3,4]", "[2,3]", "broadcast");
    CHECK_MG_ERROR(F({3, 4}) + F({3}), "add", "[3,4]", "[3]");
    CHECK_MG_ERROR(mul(F({2, 3, 4}), F({3, 3})), "mul", "[2,3,4]", "[3,3]");
    CHECK_MG_ERROR(F({5}) - F({4}), "sub", "[5]", "[4]");
    CHECK_MG_ERROR(F({5}) / F({2, 4}), "div", "[5]", "[2,4]");
    CHECK_MG_ERROR(maximum(F({2}), F({3})), "maximum");
    CHECK_MG_ERROR(where(F({2}), F({3}), F({3})), "where", "[2]", "[3]");
    CHECK_MG_ERROR(pow(F({2}), F({3})), "pow");
  }

  TEST_CASE("affine (linear layer) shapes") {
    CHECK_MG_ERROR(affine(F({3, 4}), F({5, 3})), "affine: input [3,4]", "last dim must be 3");
    CHECK_MG_ERROR(affine(F({3, 4}), F({4})), "affine: weight must be", "[4]");
    CHECK_MG_ERROR(affine(F({3, 4}), F({2, 4}), F({3})), "affine: bias [3]", "expected [2]");
    CHECK_MG_ERROR(affine(F({2, 3, 4}), F({3, 5, 4})), "affine", "holds 2 tasks", "has 3");
    CHECK_MG_ERROR(affine(F({3, 4}), F({2, 4}, kFloat64)), "affine", "one dtype");
  }

  TEST_CASE("graph capture needs a CUDA device") {
    bool ran = false;
    CHECK_MG_ERROR(capture_graph(kCPU, [&] { ran = true; }), "capture_graph", "cpu", "CUDA device");
    CHECK_FALSE(ran);
  }

  TEST_CASE("matmul shapes") {
    CHECK_MG_ERROR(matmul(F({3, 4}), F({5, 6})), "matmul: shapes [3,4] and [5,6]");
    CHECK_MG_ERROR(matmul(F({3}), F({4})), "matmul", "[3]", "[4]");
    CHECK_MG_ERROR(matmul(F({2, 3}), F({4})), "matmul", "[2,3]", "[4]");
    CHECK_MG_ERROR(matmul(F({}), F({3, 3})), "matmul", "at least 1 dim");
    CHECK_MG_ERROR(matmul(F({3, 3}), F({})), "matmul", "at least 1 dim");
    CHECK_MG_ERROR(matmul(F({2, 3, 4}), F({3, 4, 5})), "matmul", "[2]", "[3]");
  }

  TEST_CASE("dtypes") {
    CHECK_MG_ERROR(add(F({2}), F({2}, kFloat64)), "add", "float32", "float64");
    CHECK_MG_ERROR(mul(F({2}, kFloat64), F({2}, kInt64)), "mul", "float64", "int64");
    CHECK_MG_ERROR(matmul(F({2, 2}), F({2, 2}, kFloat64)), "matmul", "float32", "float64");
    CHECK_MG_ERROR(matmul(F({2, 2}, kInt64), F({2, 2}, kInt64)), "matmul", "int64");
    CHECK_MG_ERROR(exp(F({2}, kInt64)), "exp", "int64");
    CHECK_MG_ERROR(log(F({2}, kInt64)), "log", "int64");
    CHECK_MG_ERROR(softmax(F({2}, kInt64), 0), "softmax", "int64");
    CHECK_MG_ERROR(mean(F({2}, kInt64)), "mean", "int64");
    CHECK_MG_ERROR(pow(F({2}, kInt64), F({2}, kInt64)), "pow", "int64");
    CHECK_MG_ERROR(div(F({2}, kInt64), F({2}, kInt64)), "div", "int64");
    CHECK_MG_ERROR(where(F({2}), F({2}), F({2}, kFloat64)), "where", "float32", "float64");
    CHECK_MG_ERROR(concat({F({2}), F({2}, kFloat64)}), "concat", "float32", "float64");
    CHECK_MG_ERROR(randn({2}, kInt64), "int64");
    CHECK_MG_ERROR(F({2}).data_ptr<double>(), "float32", "float64");
    // What int64 does support.
    CHECK(sum(I({1, 2, 3}, {3})).item<int64_t>() == 6);
    CHECK(add(I({1, 2}, {2}), I({3, 4}, {2})).to_vector<int64_t>() == std::vector<int64_t>{4, 6});
    CHECK(neg(I({1, -2}, {2})).to_vector<int64_t>() == std::vector<int64_t>{-1, 2});
  }

  TEST_CASE("devices") {
    CHECK_MG_ERROR(Device("gpu:x"), "gpu:x");
    CHECK_MG_ERROR(Device("gpu"), "gpu");
    CHECK_MG_ERROR(Device("cuda:"), "cuda:");
    CHECK_MG_ERROR(Device("cuda:x"), "cuda:x");
    CHECK_MG_ERROR(Device("cuda:-1"), "cuda:-1");
    CHECK_MG_ERROR(Device(""), "device");
    CHECK(Device("cpu").is_cpu());
    CHECK(Device("cuda:1").index == 1);
    CHECK(Device("cuda").is_cuda());
    CHECK(Device("cuda:3").str() == "cuda:3");

    if (!build_info().cuda_compiled) {
      // No CUDA kernels: a tensor on cuda:0 cannot be created, and the error says why.
      CHECK_MG_ERROR(zeros({2}, kFloat32, Device("cuda:0")), "cuda:0");
      CHECK_MG_ERROR(randn({2}, kFloat32, Device("cuda:0")), "cuda");
      CHECK_MG_ERROR(F({2}).to(Device("cuda:0")), "cuda");
      CHECK_MG_ERROR(tensor({1.0, 2.0}, kFloat32, Device("cuda")), "cuda");
    } else if (build_info().cuda_devices > 0) {
      Tensor g = zeros({2}, kFloat32, Device("cuda:0"));
      CHECK_MG_ERROR(add(F({2}), g), "add", "cpu", "cuda:0");
      CHECK_MG_ERROR(matmul(F({2, 2}), zeros({2, 2}, kFloat32, Device("cuda:0"))), "matmul", "cpu", "cuda:0");
      CHECK_MG_ERROR(index_select(zeros({3}, kFloat32, Device("cuda:0")), 0, I({0}, {1})), "index_select", "cpu",
                     "cuda:0");
    }
  }

  TEST_CASE("index out of range and non-int64 indices") {
    Tensor x = F({4, 3});
    CHECK_MG_ERROR(index_select(x, 0, I({0, 4}, {2})), "index_select", "4", "out of range", "size 4");
    CHECK_MG_ERROR(index_select(x, 1, I({-1}, {1})), "index_select", "-1", "out of range");
    CHECK_MG_ERROR(index_select(x, 2, I({0}, {1})), "index_select", "dim 2");
    CHECK_MG_ERROR(index_select(x, 0, F({2})), "index_select", "int64", "float32");
    CHECK_MG_ERROR(index_select(x, 0, I({0, 1, 0, 1}, {2, 2})), "index_select", "[2,2]");
    CHECK_MG_ERROR(index_add(x, 0, I({5}, {1}), F({1, 3})), "index_add", "out of range");
    CHECK_MG_ERROR(index_add(x, 0, I({1}, {1}), F({1, 2})), "index_add", "[1,2]");
    CHECK_MG_ERROR(gather(x, 1, I({0, 3}, {1, 2})), "gather", "3", "out of range");
    CHECK_MG_ERROR(gather(x, 1, I({0, 1}, {2})), "gather", "dims");
    CHECK_MG_ERROR(gather(x, 0, F({1, 1})), "gather", "int64");
    CHECK_MG_ERROR(scatter_add(x, 0, I({4, 0}, {1, 2}), F({1, 2})), "scatter_add", "out of range");
    CHECK_MG_ERROR(scatter_add(x, 0, I({0, 0, 0, 0}, {1, 4}), F({1, 4})), "scatter_add", "[1,4]");
    Tensor w = F({5, 2});
    CHECK_MG_ERROR(embedding(w, I({1, 7}, {2})), "embedding", "7", "out of range");
    CHECK_MG_ERROR(embedding(w, I({-1}, {1})), "embedding", "-1", "out of range");
    CHECK_MG_ERROR(embedding(w, F({2})), "embedding", "int64", "float32");
    CHECK_MG_ERROR(embedding(F({5}), I({1}, {1})), "embedding", "2-D", "[5]");
    CHECK_MG_ERROR(select(x, 0, 4), "select", "4", "out of range");
    CHECK_MG_ERROR(select(x, 1, -4), "select", "-4", "out of range");
    CHECK_MG_ERROR(select(F({}), 0, 0), "select", "0-d");
    CHECK_MG_ERROR(narrow(x, 1, 2, 2), "narrow", "out of bounds", "size 3");
    CHECK_MG_ERROR(narrow(x, 0, 0, -1), "narrow");
    CHECK_MG_ERROR(narrow(x, 3, 0, 1), "narrow", "dim 3");
    CHECK_MG_ERROR(slice(x, 0, 0, 4, 0), "slice", "step");
    CHECK_MG_ERROR(slice(x, 0, 0, 4, -1), "slice", "step");
    // The valid edges of these ranges work.
    CHECK(index_select(x, 0, I({3, 3}, {2})).shape() == Shape{2, 3});
    CHECK(select(x, 0, -4).shape() == Shape{3});
    CHECK(narrow(x, 1, 3, 0).shape() == Shape{4, 0});
  }

  TEST_CASE("dims out of range") {
    Tensor x = F({2, 3});
    CHECK_MG_ERROR(sum(x, {5}), "sum", "dim 5", "2 dims");
    CHECK_MG_ERROR(sum(x, {-3}), "sum", "dim -3");
    CHECK_MG_ERROR(sum(x, {0, 0}), "sum", "twice");
    CHECK_MG_ERROR(sum(x, {1, -1}), "sum", "twice");
    CHECK_MG_ERROR(mean(x, {2}), "mean", "dim 2");
    CHECK_MG_ERROR(amax(x, {2}), "dim 2");
    CHECK_MG_ERROR(max(x, 2), "dim 2");
    CHECK_MG_ERROR(argmax(x, -3), "dim -3");
    CHECK_MG_ERROR(softmax(x, 2), "softmax", "dim 2");
    CHECK_MG_ERROR(log_softmax(x, -3), "log_softmax", "dim -3");
    CHECK_MG_ERROR(logsumexp(x, {2}), "logsumexp", "dim 2");
    CHECK_MG_ERROR(var(x, {2}), "var", "dim 2");
    CHECK_MG_ERROR(transpose(x, 0, 2), "transpose", "dim 2");
    CHECK_MG_ERROR(unsqueeze(x, 3), "unsqueeze", "dim 3");
    CHECK_MG_ERROR(unsqueeze(x, -4), "unsqueeze", "dim -4");
    CHECK_MG_ERROR(squeeze(x, 2), "squeeze", "dim 2");
    CHECK_MG_ERROR(concat({x, x}, 2), "concat", "dim 2");
    CHECK_MG_ERROR(stack({x, x}, 3), "stack", "dim 3");
    CHECK_MG_ERROR(F({2, 2, 2}).t(), "t", "[2,2,2]");
    // Valid extremes.
    CHECK(unsqueeze(x, 2).shape() == Shape{2, 3, 1});
    CHECK(unsqueeze(x, -3).shape() == Shape{1, 2, 3});
    CHECK(stack({x, x}, -3).shape() == Shape{2, 2, 3});
  }

  TEST_CASE("reshape, view, expand, permute") {
    Tensor x = F({3, 4});
    CHECK_MG_ERROR(reshape(x, {5, 2}), "reshape", "[5,2]", "12");
    CHECK_MG_ERROR(reshape(x, {-1, -1}), "reshape", "-1");
    CHECK_MG_ERROR(reshape(x, {-1, 5}), "reshape", "[-1,5]");
    CHECK_MG_ERROR(reshape(x, {-2, -6}), "reshape", "-2");
    CHECK_MG_ERROR(reshape(x, {0, -1}), "reshape");
    CHECK_MG_ERROR(view(x, {13}), "view", "[13]");
    CHECK_MG_ERROR(x.t().view({12}), "view", "[12]", "reshape");
    CHECK(x.t().reshape({12}).shape() == Shape{12});  // reshape copies instead
    CHECK(x.t().view({4, 3}).shape() == Shape{4, 3});
    CHECK_MG_ERROR(expand(F({3, 2}), {3, 4}), "expand", "[3,2]", "[3,4]");
    CHECK_MG_ERROR(expand(F({2, 3}), {3}), "expand", "[2,3]", "[3]");
    CHECK_MG_ERROR(expand(F({3, 1}), {-2, 4}), "expand");
    CHECK_MG_ERROR(permute(x, {0, 0}), "permute", "twice");
    CHECK_MG_ERROR(permute(x, {1, -1}), "permute", "twice");
    CHECK_MG_ERROR(permute(x, {0}), "permute", "[3,4]");
    CHECK_MG_ERROR(permute(x, {0, 2}), "permute", "dim 2");
  }

  TEST_CASE("concat and stack") {
    CHECK_MG_ERROR(concat({F({2, 3}), F({2, 4})}, 0), "concat", "[2,4]", "[2,3]");
    CHECK_MG_ERROR(concat({F({2, 3}), F({3})}, 0), "concat", "[3]", "[2,3]");
    CHECK_MG_ERROR(concat({}, 0), "concat", "at least one");
    CHECK_MG_ERROR(concat({F({}), F({})}, 0), "concat", "zero-dim");
    CHECK_MG_ERROR(concat({F({2}), Tensor()}, 0), "concat", "undefined");
    CHECK_MG_ERROR(stack({F({2, 3}), F({2, 4})}), "stack", "[2,4]", "[2,3]");
    CHECK_MG_ERROR(stack({}), "stack", "at least one");
    CHECK(concat({F({2, 3}), F({0, 3}), F({1, 3})}, 0).shape() == Shape{3, 3});
    CHECK(stack({F({}), F({})}).shape() == Shape{2});
  }

  TEST_CASE("undefined tensors") {
    CHECK_MG_ERROR(add(Tensor(), F({2})), "add", "undefined");
    CHECK_MG_ERROR(exp(Tensor()), "exp", "undefined");
    CHECK_MG_ERROR(reshape(Tensor(), {2}), "reshape", "undefined");
    CHECK_MG_ERROR(Tensor().shape(), "undefined");
  }

  TEST_CASE("backward and grad misuse") {
    SUBCASE("backward of a non-scalar without grad_outputs") {
      Tensor x = leaf({3});
      Tensor y = x * 2.0;
      CHECK_MG_ERROR(y.backward(), "backward", "[3]", "scalar", "grad_outputs");
      CHECK_MG_ERROR(grad({y}, {x}), "grad", "[3]", "scalar");
      // A one-element non-0-d output is fine.
      Tensor z = (x * 2.0).sum({0}, true);
      CHECK_NOTHROW(z.backward());
      CHECK(x.grad().to_vector() == std::vector<double>{2, 2, 2});
    }
    SUBCASE("grad w.r.t. an input that does not require grad") {
      Tensor x = leaf({3});
      Tensor c = randn({3}, kFloat64);
      Tensor y = (x * c).sum();
      CHECK_MG_ERROR(grad({y}, {x, c}), "grad", "input 1", "[3] float64 cpu", "does not require grad");
    }
    SUBCASE("grad of an output that does not require grad") {
      Tensor x = leaf({3});
      Tensor y = randn({3}, kFloat64).sum();
      CHECK_MG_ERROR(grad({y}, {x}), "grad", "output 0", "does not require grad");
      CHECK_MG_ERROR(y.backward(), "backward", "does not require grad");
      Tensor z;
      {
        NoGradGuard no_grad;
        z = (x * 2.0).sum();
      }
      CHECK_MG_ERROR(z.backward(), "does not require grad");
    }
    SUBCASE("unused input") {
      Tensor x = leaf({3});
      Tensor unused = leaf({2});
      Tensor y = (x * x).sum();
      CHECK_MG_ERROR(grad({y}, {x, unused}, {}, {.retain_graph = true}), "grad", "input 1", "[2]", "allow_unused");
      TensorList g = grad({y}, {x, unused}, {}, {.allow_unused = true});
      REQUIRE(g.size() == 2);
      CHECK(g[0].defined());
      CHECK(g[0].shape() == Shape{3});
      CHECK_FALSE(g[1].defined());
    }
    SUBCASE("grad_outputs that do not match") {
      Tensor x = leaf({3});
      Tensor y = x * 3.0;
      CHECK_MG_ERROR(grad({y}, {x}, {ones({2}, kFloat64)}), "grad", "grad_output 0", "[2]", "[3]");
      CHECK_MG_ERROR(grad({y}, {x}, {ones({3}, kFloat32)}), "grad", "float32", "float64");
      CHECK_MG_ERROR(grad({y}, {x}, {ones({3}, kFloat64), ones({3}, kFloat64)}), "grad", "1 outputs", "2 grad_outputs");
      CHECK_MG_ERROR(y.backward(ones({3, 1}, kFloat64)), "backward", "[3,1]", "[3]");
      CHECK_MG_ERROR(grad({}, {x}), "grad", "no outputs");
      CHECK_MG_ERROR(grad({y.sum()}, {}), "grad", "no inputs");
    }
    SUBCASE("in-place change of a saved tensor before backward") {
      Tensor w = leaf({3});
      Tensor x = randn({3}, kFloat64);
      Tensor y = (w * x).sum();
      x.add_(1.0);
      CHECK_MG_ERROR(y.backward(), "mul", "modified in place", "[3] float64 cpu");
    }
    SUBCASE("in-place change of a saved output before backward") {
      Tensor w = leaf({3});
      Tensor e = exp(w);
      Tensor y = e.sum();
      {
        NoGradGuard no_grad;
        e.mul_(2.0);
      }
      CHECK_MG_ERROR(y.backward(), "exp", "modified in place");
    }
    SUBCASE("in-place change of a view of a saved tensor") {
      Tensor w = leaf({2, 2});
      Tensor x = randn({2, 2}, kFloat64);
      Tensor y = matmul(w, x).sum();
      Tensor row = x.select(0, 1);
      row.fill_(3.0);
      CHECK_MG_ERROR(y.backward(), "matmul", "modified in place");
    }
    SUBCASE("an in-place change of a tensor that was not saved is fine") {
      Tensor w = leaf({3});
      Tensor x = randn({3}, kFloat64);
      Tensor y = (w + x).sum();  // add saves nothing
      x.add_(1.0);
      CHECK_NOTHROW(y.backward());
      CHECK(w.grad().to_vector() == std::vector<double>{1, 1, 1});
    }
    SUBCASE("in-place op on a tensor that requires grad, with grad mode on") {
      Tensor w = leaf({3});
      CHECK_MG_ERROR(w.add_(1.0), "add_", "requires grad", "[3] float64 cpu");
      CHECK_MG_ERROR(w.mul_(2.0), "mul_", "requires grad");
      CHECK_MG_ERROR(w.sub_(w.detach()), "requires grad");
      CHECK_MG_ERROR(w.zero_(), "requires grad");
      CHECK_MG_ERROR(w.fill_(1.0), "fill_", "requires grad");
      CHECK_MG_ERROR(w.copy_(zeros({3}, kFloat64)), "copy_", "requires grad");
      Tensor nonleaf = w * 2.0;
      CHECK_MG_ERROR(nonleaf.add_(1.0), "add_", "requires grad");
      // Allowed with recording off (an optimizer step).
      {
        NoGradGuard no_grad;
        const std::vector<double> before = w.to_vector();
        CHECK_NOTHROW(w.add_(1.0));
        CHECK(w.to_vector()[0] == doctest::Approx(before[0] + 1.0));
      }
    }
    SUBCASE("in-place results must keep the shape") {
      Tensor a = zeros({3}, kFloat64);
      CHECK_MG_ERROR(a.add_(zeros({2, 3}, kFloat64)), "add_", "[2,3]", "[3]");
      CHECK_MG_ERROR(a.mul_(zeros({4}, kFloat64)), "mul", "[4]");
    }
    SUBCASE("backward twice without retain_graph") {
      Tensor w = leaf({3});
      Tensor x = randn({3}, kFloat64);
      Tensor y = (w * x).sum();
      y.backward();
      CHECK_MG_ERROR(y.backward(), "retain_graph");
      Tensor z = (w * x).sum();
      mg::testing::check_error("grad twice",
                               [&] {
                                 grad({z}, {w});
                                 grad({z}, {w});
                               },
                               {"retain_graph"});
      // With retain_graph the second pass works and accumulates.
      Tensor v = leaf({3});
      Tensor u = (v * x).sum();
      u.backward(Tensor(), {.retain_graph = true});
      CHECK_NOTHROW(u.backward());
      CHECK(v.grad().to_vector()[0] == doctest::Approx(2.0 * x.to_vector()[0]));
    }
    SUBCASE("requires_grad_ on int64 and on non-leaves") {
      CHECK_MG_ERROR(I({1, 2, 3}, {3}).requires_grad_(), "requires_grad_", "int64", "[3]");
      CHECK_NOTHROW(I({1, 2, 3}, {3}).requires_grad_(false));
      Tensor w = leaf({3});
      Tensor y = w * 2.0;
      CHECK_MG_ERROR(y.requires_grad_(false), "requires_grad_", "detach");
    }
    SUBCASE("set_grad with the wrong shape") {
      Tensor w = leaf({3});
      CHECK_MG_ERROR(w.set_grad(zeros({2}, kFloat64)), "set_grad", "[2]", "[3]");
      CHECK_MG_ERROR(w.set_grad(zeros({3}, kFloat32)), "set_grad", "float32", "float64");
    }
    SUBCASE("hvp and jvp arguments") {
      Tensor x = leaf({3});
      auto f = [](const TensorList& in) { return (in[0] * in[0]).sum(); };
      CHECK_MG_ERROR(hvp(f, {x}, {}), "hvp", "1 inputs", "0 vectors");
      CHECK_MG_ERROR(hvp(f, {x}, {ones({2}, kFloat64)}), "hvp", "[2]", "[3]");
      CHECK_MG_ERROR(hvp([](const TensorList& in) { return in[0] * 2.0; }, {x}, {ones({3}, kFloat64)}), "hvp", "scalar",
                     "[3]");
      CHECK_MG_ERROR(jvp(f, {x}, {}), "jvp", "1 inputs", "0 vectors");
    }
  }

  TEST_CASE("item") {
    CHECK_MG_ERROR(F({2, 3}).item(), "item", "[2,3]", "6");
    CHECK_MG_ERROR(F({0}).item(), "item", "[0]");
    CHECK(F({1, 1}).item() == 1.0);
    CHECK(scalar(2.5, kFloat64).item() == 2.5);
  }

  TEST_CASE("zero-size tensors") {
    Tensor e = zeros({0, 3}, kFloat64);
    CHECK((e + e).shape() == Shape{0, 3});
    CHECK((e + ones({3}, kFloat64)).shape() == Shape{0, 3});
    CHECK(exp(e).shape() == Shape{0, 3});
    CHECK(sum(e).dim() == 0);
    CHECK(sum(e).item() == 0.0);
    CHECK(sum(e, {0}).shape() == Shape{3});
    CHECK(sum(e, {0}).to_vector() == std::vector<double>{0, 0, 0});
    CHECK(sum(e, {1}).shape() == Shape{0});
    CHECK(matmul(e, ones({3, 2}, kFloat64)).shape() == Shape{0, 2});
    Tensor k0 = matmul(zeros({2, 0}, kFloat64), zeros({0, 3}, kFloat64));  // empty inner dim: zeros
    CHECK(k0.shape() == Shape{2, 3});
    CHECK(k0.to_vector() == std::vector<double>(6, 0.0));
    CHECK(concat({e, ones({2, 3}, kFloat64)}, 0).shape() == Shape{2, 3});
    CHECK(reshape(e, {3, 0}).shape() == Shape{3, 0});
    CHECK_MG_ERROR(reshape(e, {0, -1}), "reshape", "[0,-1]");  // -1 beside a 0 could be anything
    CHECK(e.transpose(0, 1).contiguous().shape() == Shape{3, 0});
    CHECK(index_select(e, 1, I({2, 0}, {2})).shape() == Shape{0, 2});
    CHECK(index_select(ones({3}, kFloat64), 0, I({}, {0})).shape() == Shape{0});
    CHECK(softmax(e, 1).shape() == Shape{0, 3});
    CHECK(amax(e, {1}).shape() == Shape{0});  // nothing to reduce into: fine
    CHECK_MG_ERROR(amax(e), "empty");
    CHECK_MG_ERROR(amax(e, {0}), "empty", "[0,3]");
    CHECK_MG_ERROR(amin(e, {0}), "empty");
    CHECK_MG_ERROR(max(e, 0), "empty");
    CHECK_MG_ERROR(argmin(e, 0), "empty");
    CHECK_MG_ERROR(logsumexp(e, {0}), "logsumexp", "empty");
    // Gradients through zero-size tensors.
    Tensor w = zeros({0, 3}, kFloat64).requires_grad_();
    Tensor b = ones({3}, kFloat64).requires_grad_();
    Tensor y = ((w * 2.0 + b).sum({0}) * b).sum();
    y.backward();
    REQUIRE(w.grad().defined());
    CHECK(w.grad().shape() == Shape{0, 3});
    CHECK(b.grad().to_vector() == std::vector<double>{0, 0, 0});
  }

  TEST_CASE("creation") {
    CHECK_MG_ERROR(tensor(std::vector<double>{1, 2, 3}, {2, 2}), "tensor", "3", "[2,2]", "4");
    CHECK_MG_ERROR(tensor(std::vector<int64_t>{1, 2}, {3}), "tensor", "2", "[3]");
    CHECK_MG_ERROR(tensor(std::vector<float>{1, 2}, {}), "tensor", "2");
    CHECK_MG_ERROR(tensor(std::vector<double>{1e19}, {1}, kInt64), "tensor", "int64");
    CHECK_MG_ERROR(zeros({-1, 3}), "-1", "[-1,3]");
    CHECK_MG_ERROR(ones({2, -3}, kFloat64), "-3");
    CHECK_MG_ERROR(empty({-2}), "-2");
    CHECK_MG_ERROR(randn({-1}), "-1");
    CHECK_MG_ERROR(arange(0, 5, 0), "arange", "step");
    CHECK_MG_ERROR(arange(0, 5, -1), "arange");
    CHECK_MG_ERROR(arange(0, NAN, 1), "arange");
    CHECK(arange(5, 0, -1).to_vector<int64_t>() == std::vector<int64_t>{5, 4, 3, 2, 1});
    CHECK(arange(3, 3, 1).numel() == 0);
    CHECK_MG_ERROR(randint(5, 5, {3}), "randint", "5");
    CHECK_MG_ERROR(randint(5, 2, {3}), "randint", "2", "5");
    CHECK_MG_ERROR(uniform({2}, 1.0, 0.0), "uniform");
    CHECK_MG_ERROR(normal({2}, 0.0, -1.0), "normal");
    CHECK_MG_ERROR(linspace(0, 1, -1), "linspace", "-1");
  }

  TEST_CASE("op arguments") {
    CHECK_MG_ERROR(clamp(F({2}), 2.0, 1.0), "clamp", "2", "1");
    CHECK_NOTHROW(clamp(F({2}), 1.0, 1.0));
    CHECK_MG_ERROR(var(F({3}), {}, -1), "var", "correction");
    CHECK_MG_ERROR(embedding(F({5, 2}), I({0}, {1}).to(kFloat64)), "embedding", "int64");
  }

  TEST_CASE("anomaly mode names the op whose backward produced NaN or Inf") {
    SUBCASE("sqrt at 0 under AnomalyGuard throws naming sqrt") {
      Tensor x = zeros({3}, kFloat64).requires_grad_();
      Tensor y = sqrt(x);
      AnomalyGuard anomaly;
      CHECK(AnomalyMode::is_enabled());
      CHECK_MG_ERROR(y.sum().backward(), "sqrt", "NaN or Inf");
    }
    SUBCASE("through grad() too, and the guard restores the mode") {
      Tensor x = zeros({2}, kFloat64).requires_grad_();
      {
        AnomalyGuard anomaly;
        Tensor y = log(x * x).sum();
        CHECK_MG_ERROR(grad({y}, {x}), "log");
      }
      CHECK_FALSE(AnomalyMode::is_enabled());
    }
    SUBCASE("without anomaly mode the same backward does not throw") {
      CHECK_FALSE(AnomalyMode::is_enabled());
      Tensor x = zeros({3}, kFloat64).requires_grad_();
      Tensor y = sqrt(x);
      CHECK_NOTHROW(y.sum().backward());
      REQUIRE(x.grad().defined());
      CHECK(std::isinf(x.grad().to_vector()[0]));
    }
    SUBCASE("a finite backward under anomaly mode is fine") {
      AnomalyGuard anomaly;
      Tensor x = ones({3}, kFloat64).requires_grad_();
      CHECK_NOTHROW(sqrt(x).sum().backward());
      CHECK(x.grad().to_vector()[0] == doctest::Approx(0.5));
    }
  }
}
