#pragma once
// The gradcheck registry: one entry (or several cases) per op of autograd/op_list.h, each a
// function of float64 CPU inputs that it also builds. gradcheck_test.cpp runs gradcheck and
// gradgradcheck on every entry; cuda_test.cpp runs the same entries on a GPU and compares the
// values, gradients and gradients of gradients with the CPU's.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../autograd/gradcheck.h"
#include "../autograd/op_list.h"
#include "../autograd/ops.h"
#include "../tensor/build_info.h"
#include "../tensor/creation.h"

namespace mg::testing {

struct GradcheckEntry {
  OpId id;
  std::string case_name;
  std::function<TensorList()> make_inputs;
  TensorFunction f;
  GradcheckOptions options;  // defaults, except where a case needs looser ones
};

// ---- inputs: float64, from generators with fixed seeds; none of these require grad yet ----

inline Tensor N(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  return randn(shape, kFloat64, kCPU, &gen);
}

inline Tensor U(const Shape& shape, double low, double high, uint64_t seed) {
  Generator gen(seed);
  return uniform(shape, low, high, kFloat64, kCPU, &gen);
}

// Positive values, for log / sqrt / rsqrt / pow bases.
inline Tensor P(const Shape& shape, uint64_t seed) { return U(shape, 0.5, 2.0, seed); }

// Values with |x| in [0.25, 1.5] and random signs: away from the kinks of abs / relu and the
// pole of 1/x.
inline Tensor A(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  Tensor magnitude = uniform(shape, 0.25, 1.5, kFloat64, kCPU, &gen);
  Tensor signs = sign(randn(shape, kFloat64, kCPU, &gen));
  return magnitude * signs;
}

inline Tensor V(const std::vector<double>& values, const Shape& shape) { return tensor(values, shape, kFloat64); }
inline Tensor I(const std::vector<int64_t>& values, const Shape& shape) { return tensor(values, shape); }

// A checked input: a leaf that requires grad.
inline Tensor leaf(Tensor t) {
  t.requires_grad_();
  return t;
}
// A non-contiguous leaf: t with its last two dims swapped (pass t with the transposed shape).
inline Tensor leafT(const Tensor& t) { return t.transpose(-2, -1).detach().requires_grad_(); }
// A non-contiguous leaf with an offset: every other element of t's last dim, starting at 1.
inline Tensor leafS(const Tensor& t) { return t.slice(-1, 1, t.size(-1), 2).detach().requires_grad_(); }

#define IN(...) []() -> TensorList { return {__VA_ARGS__}; }
#define FN(...) [](const TensorList& x) -> Tensor { return __VA_ARGS__; }

class Table {
 public:
  void add(OpId id, std::string name, std::function<TensorList()> make, TensorFunction f,
           GradcheckOptions options = {}) {
    entries.push_back({id, std::move(name), std::move(make), std::move(f), options});
  }
  std::vector<GradcheckEntry> entries;
};

using Domain = Tensor (*)(const Shape&, uint64_t);

// The same cases for every unary op: contiguous, 0-d, transposed, strided-with-offset, 3-D.
inline void add_unary(Table& t, OpId id, Tensor (*op)(const Tensor&), Domain domain) {
  // Captures: op and domain are plain function pointers.
  t.add(
      id, "[2,3]",
      [domain] {
        return TensorList{leaf(domain({2, 3}, 11))};
      },
      [op](const TensorList& x) { return op(x[0]); });
  t.add(
      id, "0-d", [domain] { return TensorList{leaf(domain({}, 12))}; }, [op](const TensorList& x) { return op(x[0]); });
  t.add(
      id, "transposed leaf [3,2]^T",
      [domain] {
        return TensorList{leafT(domain({3, 2}, 13))};
      },
      [op](const TensorList& x) { return op(x[0]); });
  t.add(
      id, "strided leaf [2,7] step 2",
      [domain] {
        return TensorList{leafS(domain({2, 7}, 14))};
      },
      [op](const TensorList& x) { return op(x[0]); });
  t.add(
      id, "transposed inside f [2,3,2]",
      [domain] {
        return TensorList{leaf(domain({2, 3, 2}, 15))};
      },
      [op](const TensorList& x) { return op(x[0].transpose(0, 2)); });
}

inline Tensor gelu_tanh_fn(const Tensor& x) { return gelu(x, GeluApproximation::Tanh); }
inline Tensor gelu_erf_fn(const Tensor& x) { return gelu(x, GeluApproximation::None); }
inline Tensor neg_fn(const Tensor& x) { return neg(x); }
inline Tensor exp_fn(const Tensor& x) { return exp(x); }
inline Tensor log_fn(const Tensor& x) { return log(x); }
inline Tensor sqrt_fn(const Tensor& x) { return sqrt(x); }
inline Tensor rsqrt_fn(const Tensor& x) { return rsqrt(x); }
inline Tensor abs_fn(const Tensor& x) { return abs(x); }
inline Tensor sin_fn(const Tensor& x) { return sin(x); }
inline Tensor cos_fn(const Tensor& x) { return cos(x); }
inline Tensor tanh_fn(const Tensor& x) { return tanh(x); }
inline Tensor sigmoid_fn(const Tensor& x) { return sigmoid(x); }
inline Tensor relu_fn(const Tensor& x) { return relu(x); }
inline Tensor softplus_fn(const Tensor& x) { return softplus(x); }
inline Tensor erf_fn(const Tensor& x) { return erf(x); }
inline Tensor square_fn(const Tensor& x) { return square(x); }
inline Tensor reciprocal_fn(const Tensor& x) { return reciprocal(x); }

inline std::vector<GradcheckEntry> build_table() {
  Table t;

  // ---------------------------------------------------------------- binary, broadcasting
  t.add(OpId::add, "[2,3]+[2,3]", IN(leaf(N({2, 3}, 1)), leaf(N({2, 3}, 2))), FN(x[0] + x[1]));
  t.add(OpId::add, "[3,1]+[1,4]", IN(leaf(N({3, 1}, 1)), leaf(N({1, 4}, 2))), FN(add(x[0], x[1])));
  t.add(OpId::add, "[2,3,4]+[4]", IN(leaf(N({2, 3, 4}, 1)), leaf(N({4}, 2))), FN(x[0] + x[1]));
  t.add(OpId::add, "0-d+[2,3]", IN(leaf(N({}, 1)), leaf(N({2, 3}, 2))), FN(x[0] + x[1]));
  t.add(OpId::add, "0-d+0-d", IN(leaf(N({}, 1)), leaf(N({}, 2))), FN(x[0] + x[1]));
  t.add(OpId::add, "transposed+strided", IN(leafT(N({3, 2}, 1)), leafS(N({2, 7}, 2))), FN(x[0] + x[1]));
  t.add(OpId::add, "x+x", IN(leaf(N({2, 3}, 1))), FN(x[0] + x[0]));
  t.add(OpId::add, "x+double", IN(leaf(N({2, 3}, 1))), FN(x[0] + 2.5));
  t.add(OpId::add, "only b requires grad", IN(N({2, 3}, 1), leaf(N({3}, 2))), FN(x[0] + x[1]));

  t.add(OpId::sub, "[2,3]-[2,3]", IN(leaf(N({2, 3}, 3)), leaf(N({2, 3}, 4))), FN(x[0] - x[1]));
  t.add(OpId::sub, "[3,1]-[1,4]", IN(leaf(N({3, 1}, 3)), leaf(N({1, 4}, 4))), FN(sub(x[0], x[1])));
  t.add(OpId::sub, "[4]-[2,3,4]", IN(leaf(N({4}, 3)), leaf(N({2, 3, 4}, 4))), FN(x[0] - x[1]));
  t.add(OpId::sub, "double-0-d", IN(leaf(N({}, 3))), FN(1.5 - x[0]));
  t.add(OpId::sub, "strided-transposed", IN(leafS(N({2, 7}, 3)), leafT(N({3, 2}, 4))), FN(x[0] - x[1]));
  t.add(OpId::sub_scaled, "[2,3]-0.7*[2,3]", IN(leaf(N({2, 3}, 3)), leaf(N({2, 3}, 4))),
        FN(sub_scaled(x[0], x[1], 0.7)));
  t.add(OpId::sub_scaled, "[3,1]-(-1.3)*[1,4]", IN(leaf(N({3, 1}, 3)), leaf(N({1, 4}, 4))),
        FN(sub_scaled(x[0], x[1], -1.3)));

  t.add(OpId::mul, "[2,3]*[2,3]", IN(leaf(N({2, 3}, 5)), leaf(N({2, 3}, 6))), FN(x[0] * x[1]));
  t.add(OpId::mul, "[3,1]*[1,4]", IN(leaf(N({3, 1}, 5)), leaf(N({1, 4}, 6))), FN(mul(x[0], x[1])));
  t.add(OpId::mul, "[2,3,4]*[4]", IN(leaf(N({2, 3, 4}, 5)), leaf(N({4}, 6))), FN(x[0] * x[1]));
  t.add(OpId::mul, "0-d*[2,3]", IN(leaf(N({}, 5)), leaf(N({2, 3}, 6))), FN(x[0] * x[1]));
  t.add(OpId::mul, "x*x", IN(leaf(N({2, 3}, 5))), FN(x[0] * x[0]));
  t.add(OpId::mul, "transposed*strided", IN(leafT(N({3, 2}, 5)), leafS(N({2, 7}, 6))), FN(x[0] * x[1]));
  t.add(OpId::mul, "double*x", IN(leaf(N({2, 3}, 5))), FN(3.0 * x[0]));

  t.add(OpId::div, "[2,3]/[2,3]", IN(leaf(N({2, 3}, 7)), leaf(A({2, 3}, 8))), FN(x[0] / x[1]));
  t.add(OpId::div, "[2,3,4]/[3,1]", IN(leaf(N({2, 3, 4}, 7)), leaf(A({3, 1}, 8))), FN(div(x[0], x[1])));
  t.add(OpId::div, "0-d/[4]", IN(leaf(N({}, 7)), leaf(A({4}, 8))), FN(x[0] / x[1]));
  t.add(OpId::div, "double/x", IN(leaf(A({2, 3}, 8))), FN(1.0 / x[0]));
  t.add(OpId::div, "x/double", IN(leaf(N({2, 3}, 8))), FN(x[0] / 4.0));
  t.add(OpId::div, "strided/transposed", IN(leafS(N({2, 7}, 7)), leafT(A({3, 2}, 8))), FN(x[0] / x[1]));

  t.add(OpId::pow, "[2,3]^[2,3]", IN(leaf(P({2, 3}, 9)), leaf(N({2, 3}, 10))), FN(pow(x[0], x[1])));
  t.add(OpId::pow, "[3,1]^[1,4]", IN(leaf(P({3, 1}, 9)), leaf(N({1, 4}, 10))), FN(pow(x[0], x[1])));
  t.add(OpId::pow, "[2,3]^0-d", IN(leaf(P({2, 3}, 9)), leaf(N({}, 10))), FN(pow(x[0], x[1])));
  t.add(OpId::pow, "x^2.5", IN(leaf(P({2, 3}, 9))), FN(pow(x[0], 2.5)));
  t.add(OpId::pow, "negative base ^3", IN(leaf(A({2, 3}, 9))), FN(pow(x[0], 3.0)));
  t.add(OpId::pow, "transposed^strided", IN(leafT(P({3, 2}, 9)), leafS(N({2, 7}, 10))), FN(pow(x[0], x[1])));

  t.add(OpId::maximum, "[2,3],[2,3]", IN(leaf(N({2, 3}, 20)), leaf(N({2, 3}, 21))), FN(maximum(x[0], x[1])));
  t.add(OpId::maximum, "[3,1],[1,4]", IN(leaf(N({3, 1}, 20)), leaf(N({1, 4}, 21))), FN(maximum(x[0], x[1])));
  t.add(OpId::maximum, "[2,3,4],[4]", IN(leaf(N({2, 3, 4}, 20)), leaf(N({4}, 21))), FN(maximum(x[0], x[1])));
  t.add(OpId::maximum, "transposed,0-d", IN(leafT(N({3, 2}, 20)), leaf(N({}, 21))), FN(maximum(x[0], x[1])));

  t.add(OpId::minimum, "[2,3],[2,3]", IN(leaf(N({2, 3}, 22)), leaf(N({2, 3}, 23))), FN(minimum(x[0], x[1])));
  t.add(OpId::minimum, "[3,1],[1,4]", IN(leaf(N({3, 1}, 22)), leaf(N({1, 4}, 23))), FN(minimum(x[0], x[1])));
  t.add(OpId::minimum, "[4],[2,3,4]", IN(leaf(N({4}, 22)), leaf(N({2, 3, 4}, 23))), FN(minimum(x[0], x[1])));
  t.add(OpId::minimum, "strided,transposed", IN(leafS(N({2, 7}, 22)), leafT(N({3, 2}, 23))), FN(minimum(x[0], x[1])));

  // cond is the third input: it does not require grad, so gradcheck passes it through.
  t.add(OpId::where, "[2,3] float cond", IN(leaf(N({2, 3}, 24)), leaf(N({2, 3}, 25)), V({1, 0, 0, 1, 1, 0}, {2, 3})),
        FN(where(x[2], x[0], x[1])));
  t.add(OpId::where, "cond [3,1], a [1,4], b [4]", IN(leaf(N({1, 4}, 24)), leaf(N({4}, 25)), I({1, 0, 1}, {3, 1})),
        FN(where(x[2], x[0], x[1])));
  t.add(OpId::where, "0-d b, transposed a", IN(leafT(N({3, 2}, 24)), leaf(N({}, 25)), V({0, 1, 1, 0, 1, 0}, {2, 3})),
        FN(where(x[2], x[0], x[1])));

  const std::vector<double> clamp_values = {-1.3, -0.7, -0.2, 0.1, 0.35, 0.8, 1.4, -0.45, 0.05, 0.9, -0.9, 0.2};
  t.add(
      OpId::clamp, "min and max",
      [clamp_values] {
        return TensorList{leaf(V(clamp_values, {3, 4}))};
      },
      FN(clamp(x[0], -0.5, 0.5)));
  t.add(
      OpId::clamp, "min only", [clamp_values] { return TensorList{leaf(V(clamp_values, {12}))}; },
      FN(clamp(x[0], 0.0, std::nullopt)));
  t.add(
      OpId::clamp, "max only, transposed",
      [clamp_values] {
        return TensorList{leafT(V(clamp_values, {4, 3}))};
      },
      FN(clamp(x[0], std::nullopt, 0.6)));
  t.add(OpId::clamp, "no bounds (identity)", IN(leaf(N({2, 3}, 26))), FN(clamp(x[0], std::nullopt, std::nullopt)));
  t.add(OpId::clamp, "0-d inside", IN(leaf(V({0.3}, {}))), FN(clamp(x[0], -1.0, 1.0)));

  // ---------------------------------------------------------------- unary
  add_unary(t, OpId::neg, neg_fn, N);
  add_unary(t, OpId::exp, exp_fn, N);
  add_unary(t, OpId::log, log_fn, P);
  add_unary(t, OpId::sqrt, sqrt_fn, P);
  add_unary(t, OpId::rsqrt, rsqrt_fn, P);
  add_unary(t, OpId::abs, abs_fn, A);
  add_unary(t, OpId::sin, sin_fn, N);
  add_unary(t, OpId::cos, cos_fn, N);
  add_unary(t, OpId::tanh, tanh_fn, N);
  add_unary(t, OpId::sigmoid, sigmoid_fn, N);
  add_unary(t, OpId::relu, relu_fn, A);
  add_unary(t, OpId::gelu_tanh, gelu_tanh_fn, N);
  add_unary(t, OpId::gelu_erf, gelu_erf_fn, N);
  add_unary(t, OpId::softplus, softplus_fn, N);
  add_unary(t, OpId::erf, erf_fn, N);
  add_unary(t, OpId::square, square_fn, N);
  add_unary(t, OpId::reciprocal, reciprocal_fn, A);

  // ---------------------------------------------------------------- reductions
  t.add(OpId::sum, "all dims", IN(leaf(N({2, 3, 4}, 30))), FN(sum(x[0])));
  t.add(OpId::sum, "member sum()", IN(leaf(N({2, 3}, 30))), FN(x[0].sum()));
  t.add(OpId::sum, "dim 1", IN(leaf(N({2, 3, 4}, 30))), FN(sum(x[0], {1})));
  t.add(OpId::sum, "dims {0,2} keepdim", IN(leaf(N({2, 3, 4}, 30))), FN(sum(x[0], {0, 2}, true)));
  t.add(OpId::sum, "dim -1 keepdim", IN(leaf(N({2, 3, 4}, 30))), FN(x[0].sum({-1}, true)));
  t.add(OpId::sum, "dims {-1,-3}", IN(leaf(N({2, 3, 4}, 30))), FN(sum(x[0], {-1, -3})));
  t.add(OpId::sum, "all dims keepdim", IN(leaf(N({2, 3}, 30))), FN(sum(x[0], {}, true)));
  t.add(OpId::sum, "0-d", IN(leaf(N({}, 30))), FN(sum(x[0])));
  t.add(OpId::sum, "transposed leaf dim 0", IN(leafT(N({4, 3}, 30))), FN(sum(x[0], {0})));
  t.add(OpId::sum, "strided leaf dim -1 keepdim", IN(leafS(N({3, 9}, 30))), FN(sum(x[0], {-1}, true)));

  t.add(OpId::mean, "all dims", IN(leaf(N({2, 3, 4}, 31))), FN(mean(x[0])));
  t.add(OpId::mean, "member mean()", IN(leaf(N({2, 3}, 31))), FN(x[0].mean()));
  t.add(OpId::mean, "dim 1", IN(leaf(N({2, 3, 4}, 31))), FN(mean(x[0], {1})));
  t.add(OpId::mean, "dims {0,-1} keepdim", IN(leaf(N({2, 3, 4}, 31))), FN(mean(x[0], {0, -1}, true)));
  t.add(OpId::mean, "0-d", IN(leaf(N({}, 31))), FN(mean(x[0])));
  t.add(OpId::mean, "transposed leaf dim -2", IN(leafT(N({4, 3}, 31))), FN(x[0].mean({-2})));

  t.add(OpId::amax, "all dims", IN(leaf(N({2, 3, 4}, 32))), FN(amax(x[0])));
  t.add(OpId::amax, "dim 1", IN(leaf(N({2, 3, 4}, 32))), FN(amax(x[0], {1})));
  t.add(OpId::amax, "dims {-1,0} keepdim", IN(leaf(N({2, 3, 4}, 32))), FN(amax(x[0], {-1, 0}, true)));
  t.add(OpId::amax, "transposed leaf dim 0", IN(leafT(N({4, 3}, 32))), FN(amax(x[0], {0})));
  t.add(OpId::amax, "0-d", IN(leaf(N({}, 32))), FN(amax(x[0])));

  t.add(OpId::amin, "all dims", IN(leaf(N({2, 3, 4}, 33))), FN(amin(x[0])));
  t.add(OpId::amin, "dim 2", IN(leaf(N({2, 3, 4}, 33))), FN(amin(x[0], {2})));
  t.add(OpId::amin, "dims {0,1} keepdim", IN(leaf(N({2, 3, 4}, 33))), FN(amin(x[0], {0, 1}, true)));
  t.add(OpId::amin, "strided leaf dim -1", IN(leafS(N({3, 9}, 33))), FN(amin(x[0], {-1})));

  t.add(OpId::max_dim, "dim 1", IN(leaf(N({3, 4}, 34))), FN(max(x[0], 1).first));
  t.add(OpId::max_dim, "dim -1 keepdim", IN(leaf(N({2, 3, 4}, 34))), FN(max(x[0], -1, true).first));
  t.add(OpId::max_dim, "dim 0 of 3-D", IN(leaf(N({2, 3, 4}, 34))), FN(max(x[0], 0).first));
  t.add(OpId::max_dim, "1-D", IN(leaf(N({5}, 34))), FN(max(x[0], 0).first));
  t.add(OpId::max_dim, "transposed leaf dim 1", IN(leafT(N({4, 3}, 34))), FN(max(x[0], 1).first));

  t.add(OpId::min_dim, "dim 0", IN(leaf(N({3, 4}, 35))), FN(min(x[0], 0).first));
  t.add(OpId::min_dim, "dim -2 keepdim", IN(leaf(N({2, 3, 4}, 35))), FN(min(x[0], -2, true).first));
  t.add(OpId::min_dim, "strided leaf dim 1", IN(leafS(N({3, 9}, 35))), FN(min(x[0], 1).first));

  t.add(OpId::logsumexp, "dim 1", IN(leaf(N({3, 4}, 36))), FN(logsumexp(x[0], {1})));
  t.add(OpId::logsumexp, "dim -1 keepdim", IN(leaf(N({2, 3, 4}, 36))), FN(logsumexp(x[0], {-1}, true)));
  t.add(OpId::logsumexp, "dims {0,1} of 3-D", IN(leaf(N({2, 3, 4}, 36))), FN(logsumexp(x[0], {0, 1})));
  t.add(OpId::logsumexp, "all dims", IN(leaf(N({2, 3}, 36))), FN(logsumexp(x[0], {})));
  t.add(OpId::logsumexp, "transposed leaf dim 0", IN(leafT(N({4, 3}, 36))), FN(logsumexp(x[0], {0})));

  t.add(OpId::var, "all dims", IN(leaf(N({3, 4}, 37))), FN(var(x[0])));
  t.add(OpId::var, "dim 1", IN(leaf(N({3, 4}, 37))), FN(var(x[0], {1})));
  t.add(OpId::var, "dims {0,2} correction 0 keepdim", IN(leaf(N({2, 3, 4}, 37))), FN(var(x[0], {0, 2}, 0, true)));
  t.add(OpId::var, "dim -1 keepdim", IN(leaf(N({2, 3, 4}, 37))), FN(var(x[0], {-1}, 1, true)));
  t.add(OpId::var, "strided leaf dim 0", IN(leafS(N({3, 9}, 37))), FN(var(x[0], {0})));

  // ---------------------------------------------------------------- linear algebra
  t.add(OpId::matmul, "[3,4]x[4,2]", IN(leaf(N({3, 4}, 40)), leaf(N({4, 2}, 41))), FN(matmul(x[0], x[1])));
  t.add(OpId::matmul, "[4]x[4] -> 0-d", IN(leaf(N({4}, 40)), leaf(N({4}, 41))), FN(matmul(x[0], x[1])));
  t.add(OpId::matmul, "[4]x[4,3]", IN(leaf(N({4}, 40)), leaf(N({4, 3}, 41))), FN(matmul(x[0], x[1])));
  t.add(OpId::matmul, "[3,4]x[4]", IN(leaf(N({3, 4}, 40)), leaf(N({4}, 41))), FN(matmul(x[0], x[1])));
  t.add(OpId::matmul, "batched [2,3,4]x[2,4,2]", IN(leaf(N({2, 3, 4}, 40)), leaf(N({2, 4, 2}, 41))),
        FN(matmul(x[0], x[1])));
  t.add(OpId::matmul, "broadcast batch [2,1,2,3]x[3,3,2]", IN(leaf(N({2, 1, 2, 3}, 40)), leaf(N({3, 3, 2}, 41))),
        FN(matmul(x[0], x[1])));
  t.add(OpId::matmul, "[2,3,4]x[4,2] (2-D rhs broadcast)", IN(leaf(N({2, 3, 4}, 40)), leaf(N({4, 2}, 41))),
        FN(matmul(x[0], x[1])));
  t.add(OpId::matmul, "[4]x[2,4,3] (1-D lhs, batched rhs)", IN(leaf(N({4}, 40)), leaf(N({2, 4, 3}, 41))),
        FN(matmul(x[0], x[1])));
  t.add(OpId::matmul, "[2,3,4]x[4] (batched lhs, 1-D rhs)", IN(leaf(N({2, 3, 4}, 40)), leaf(N({4}, 41))),
        FN(matmul(x[0], x[1])));
  t.add(OpId::affine, "[3,4] W[5,4] + b[5]", IN(leaf(N({3, 4}, 42)), leaf(N({5, 4}, 43)), leaf(N({5}, 44))),
        FN(affine(x[0], x[1], x[2])));
  t.add(OpId::affine, "[4] W[2,4], no bias", IN(leaf(N({4}, 42)), leaf(N({2, 4}, 43))), FN(affine(x[0], x[1])));
  t.add(OpId::affine, "[2,3,4] W[3,4] + b, leading dims",
        IN(leaf(N({2, 3, 4}, 42)), leaf(N({3, 4}, 43)), leaf(N({3}, 44))), FN(affine(x[0], x[1], x[2])));
  t.add(OpId::affine, "per task [2,3,4] W[2,5,4] + b[2,5]",
        IN(leaf(N({2, 3, 4}, 42)), leaf(N({2, 5, 4}, 43)), leaf(N({2, 5}, 44))), FN(affine(x[0], x[1], x[2])));
  t.add(OpId::affine, "per task [2,2,3,4] W[2,3,4], transposed weight leaf",
        IN(leaf(N({2, 2, 3, 4}, 42)), leaf(N({2, 3, 4}, 43))), FN(affine(x[0], x[1].transpose(1, 2).transpose(1, 2))));
  t.add(OpId::affine, "only the weight requires grad", IN(N({3, 4}, 42), leaf(N({2, 4}, 43)), N({2}, 44)),
        FN(affine(x[0], x[1], x[2])));
  t.add(OpId::affine, "transposed input", IN(leafT(N({4, 3}, 42)), leaf(N({2, 4}, 43)), leaf(N({2}, 44))),
        FN(affine(x[0], x[1], x[2])));
  t.add(OpId::matmul, "transposed leaves", IN(leafT(N({4, 3}, 40)), leafT(N({2, 4}, 41))), FN(matmul(x[0], x[1])));
  t.add(OpId::matmul, "a^T b inside f", IN(leaf(N({4, 3}, 40)), leaf(N({4, 2}, 41))),
        FN(matmul(x[0].transpose(0, 1), x[1])));
  t.add(OpId::matmul, "strided lhs", IN(leafS(N({3, 9}, 40)), leaf(N({4, 2}, 41))), FN(matmul(x[0], x[1])));
  t.add(OpId::matmul, "x x^T (same input twice)", IN(leaf(N({3, 2}, 40))), FN(matmul(x[0], x[0].t())));

  // ---------------------------------------------------------------- normalisation
  t.add(OpId::softmax, "[2,3] dim 1", IN(leaf(N({2, 3}, 42))), FN(softmax(x[0], 1)));
  t.add(OpId::softmax, "[2,3,4] dim -1", IN(leaf(N({2, 3, 4}, 42))), FN(softmax(x[0], -1)));
  t.add(OpId::softmax, "[2,3,4] dim 0", IN(leaf(N({2, 3, 4}, 42))), FN(softmax(x[0], 0)));
  t.add(OpId::softmax, "1-D", IN(leaf(N({5}, 42))), FN(softmax(x[0], 0)));
  t.add(OpId::softmax, "transposed leaf dim 1", IN(leafT(N({4, 3}, 42))), FN(softmax(x[0], 1)));

  t.add(OpId::log_softmax, "[2,3] dim 1", IN(leaf(N({2, 3}, 43))), FN(log_softmax(x[0], 1)));
  t.add(OpId::log_softmax, "[2,3,4] dim -2", IN(leaf(N({2, 3, 4}, 43))), FN(log_softmax(x[0], -2)));
  t.add(OpId::log_softmax, "strided leaf dim 0", IN(leafS(N({3, 9}, 43))), FN(log_softmax(x[0], 0)));
  t.add(OpId::log_softmax, "1-D", IN(leaf(N({5}, 43))), FN(log_softmax(x[0], -1)));

  t.add(OpId::layer_norm, "[2,5] weight and bias", IN(leaf(N({2, 5}, 44)), leaf(N({5}, 45)), leaf(N({5}, 46))),
        FN(layer_norm(x[0], {5}, x[1], x[2])));
  t.add(OpId::layer_norm, "[2,3,4] over the last two dims, no affine", IN(leaf(N({2, 3, 4}, 44))),
        FN(layer_norm(x[0], {3, 4})));
  t.add(OpId::layer_norm, "transposed leaf, weight only", IN(leafT(N({4, 3}, 44)), leaf(N({4}, 45))),
        FN(layer_norm(x[0], {4}, x[1])));
  t.add(OpId::layer_norm, "strided leaf, bias only, eps 0.5", IN(leafS(N({3, 9}, 44)), leaf(N({4}, 46))),
        FN(layer_norm(x[0], {4}, Tensor(), x[1], 0.5)));
  t.add(OpId::layer_norm, "only the parameters require grad", IN(N({3, 4}, 44), leaf(N({2, 4}, 45)), leaf(N({4}, 46))),
        FN(layer_norm(x[0], {4}, select(x[1], 0, 1), x[2])));
  t.add(OpId::batch_norm, "[3,2,2,3] weight and bias",
        IN(leaf(N({3, 2, 2, 3}, 47)), leaf(N({2}, 48)), leaf(N({2}, 49))), FN(batch_norm(x[0], x[1], x[2])));
  t.add(OpId::batch_norm, "[2,3,1,5] no affine, eps 0.5", IN(leaf(N({2, 3, 1, 5}, 47))),
        FN(batch_norm(x[0], Tensor(), Tensor(), 0.5)));
  t.add(OpId::batch_norm, "task-batched [2,3,2,2,2] with [2,2] weight and bias",
        IN(leaf(N({2, 3, 2, 2, 2}, 47)), leaf(N({2, 2}, 48)), leaf(N({2, 2}, 49))), FN(batch_norm(x[0], x[1], x[2])));
  t.add(OpId::batch_norm, "transposed leaf, weight only", IN(leafT(N({2, 3, 2, 3}, 47)), leaf(N({3}, 48))),
        FN(batch_norm(x[0], x[1])));
  t.add(OpId::batch_norm, "only the parameters require grad",
        IN(N({4, 2, 2, 2}, 47), leaf(N({2}, 48)), leaf(N({2}, 49))), FN(batch_norm(x[0], x[1], x[2])));

  // ---------------------------------------------------------------- losses
  t.add(OpId::cross_entropy_rows, "[3,4]", IN(leaf(N({3, 4}, 47)), I({1, 3, 0}, {3})),
        FN(cross_entropy_rows(x[0], x[1])));
  t.add(OpId::cross_entropy_rows, "[2,3,4]", IN(leaf(N({2, 3, 4}, 47)), I({0, 3, 2, 1, 1, 0}, {2, 3})),
        FN(cross_entropy_rows(x[0], x[1])));
  t.add(OpId::cross_entropy_rows, "[4,3] with an ignored target", IN(leaf(N({4, 3}, 47)), I({2, -100, 0, 1}, {4})),
        FN(cross_entropy_rows(x[0], x[1], -100)));
  t.add(OpId::cross_entropy_rows, "ignore_index is a class", IN(leaf(N({4, 3}, 47)), I({2, 1, 0, 1}, {4})),
        FN(cross_entropy_rows(x[0], x[1], 1)));
  t.add(OpId::cross_entropy_rows, "transposed leaf [4,3]^T", IN(leafT(N({4, 3}, 47)), I({0, 3, 1}, {3})),
        FN(cross_entropy_rows(x[0], x[1])));
  t.add(OpId::cross_entropy_rows, "strided leaf [3,9] step 2", IN(leafS(N({3, 9}, 47)), I({3, -100, 1}, {3})),
        FN(cross_entropy_rows(x[0], x[1])));
  t.add(OpId::cross_entropy_rows, "classes moved last inside f [2,3,2]",
        IN(leaf(N({2, 3, 2}, 47)), I({2, 0, 1, 2}, {2, 2})), FN(cross_entropy_rows(x[0].transpose(1, 2), x[1])));
  t.add(OpId::cross_entropy_rows, "1-D logits, 0-d target", IN(leaf(N({5}, 47)), I({3}, {})),
        FN(cross_entropy_rows(x[0], x[1])));

  // ---------------------------------------------------------------- indexing (repeated indices)
  t.add(OpId::index_select, "dim 0 repeated", IN(leaf(N({4, 3}, 50)), I({2, 0, 2, 3}, {4})),
        FN(index_select(x[0], 0, x[1])));
  t.add(OpId::index_select, "dim -1 of 3-D", IN(leaf(N({2, 3, 4}, 50)), I({3, 3, 1}, {3})),
        FN(index_select(x[0], -1, x[1])));
  t.add(OpId::index_select, "transposed leaf dim 1", IN(leafT(N({4, 3}, 50)), I({0, 0, 3}, {3})),
        FN(index_select(x[0], 1, x[1])));

  t.add(OpId::index_add, "dim 0 repeated, both grads", IN(leaf(N({4, 3}, 51)), I({1, 3, 1}, {3}), leaf(N({3, 3}, 52))),
        FN(index_add(x[0], 0, x[1], x[2])));
  t.add(OpId::index_add, "dim -1, only src grad", IN(N({2, 5}, 51), I({4, 0, 4}, {3}), leaf(N({2, 3}, 52))),
        FN(index_add(x[0], -1, x[1], x[2])));
  t.add(OpId::index_add, "dim 1 of 3-D, transposed src",
        IN(leaf(N({2, 4, 3}, 51)), I({2, 2}, {2}), leafT(N({2, 3, 2}, 52))), FN(index_add(x[0], 1, x[1], x[2])));

  t.add(OpId::gather, "dim 1 repeated", IN(leaf(N({3, 4}, 53)), I({0, 0, 3, 2, 1, 1}, {3, 2})),
        FN(gather(x[0], 1, x[1])));
  t.add(OpId::gather, "dim 0, index smaller", IN(leaf(N({3, 4}, 53)), I({2, 2, 0, 1, 1, 2}, {2, 3})),
        FN(gather(x[0], 0, x[1])));
  t.add(OpId::gather, "dim -1 of 3-D", IN(leaf(N({2, 2, 3}, 53)), I({2, 0, 2, 1, 1, 0, 0, 0}, {2, 2, 2})),
        FN(gather(x[0], -1, x[1])));
  t.add(OpId::gather, "transposed leaf dim 0", IN(leafT(N({4, 3}, 53)), I({2, 0, 2, 1, 1, 0, 0, 0}, {2, 4})),
        FN(gather(x[0], 0, x[1])));

  t.add(OpId::scatter_add, "dim 0 repeated, both grads",
        IN(leaf(N({3, 4}, 54)), I({0, 2, 2, 1, 0, 0, 2, 1}, {2, 4}), leaf(N({2, 4}, 55))),
        FN(scatter_add(x[0], 0, x[1], x[2])));
  t.add(OpId::scatter_add, "dim 1, only src grad",
        IN(N({2, 5}, 54), I({4, 4, 0, 1, 3, 1}, {2, 3}), leaf(N({2, 3}, 55))), FN(scatter_add(x[0], 1, x[1], x[2])));
  t.add(OpId::scatter_add, "src larger than index",
        IN(leaf(N({2, 5}, 54)), I({0, 1, 4, 2, 2, 3}, {2, 3}), leaf(N({3, 4}, 55))),
        FN(scatter_add(x[0], 1, x[1], x[2])));
  t.add(OpId::scatter_add, "dim -1, transposed self",
        IN(leafT(N({4, 2}, 54)), I({3, 3, 0, 1}, {2, 2}), leaf(N({2, 2}, 55))), FN(scatter_add(x[0], -1, x[1], x[2])));

  t.add(OpId::embedding, "indices [2,3] repeated", IN(leaf(N({5, 3}, 56)), I({4, 0, 4, 1, 1, 4}, {2, 3})),
        FN(embedding(x[0], x[1])));
  t.add(OpId::embedding, "indices [4]", IN(leaf(N({5, 2}, 56)), I({3, 3, 0, 2}, {4})), FN(embedding(x[0], x[1])));
  t.add(OpId::embedding, "0-d index", IN(leaf(N({5, 2}, 56)), I({3}, {})), FN(embedding(x[0], x[1])));
  t.add(OpId::embedding, "transposed weight", IN(leafT(N({3, 5}, 56)), I({1, 2, 1}, {3})), FN(embedding(x[0], x[1])));

  // ---------------------------------------------------------------- joining
  t.add(OpId::concat, "3 inputs dim 0", IN(leaf(N({1, 3}, 60)), leaf(N({2, 3}, 61)), leaf(N({3, 3}, 62))),
        FN(concat({x[0], x[1], x[2]}, 0)));
  t.add(OpId::concat, "3 inputs dim -1", IN(leaf(N({2, 1}, 60)), leaf(N({2, 3}, 61)), leaf(N({2, 2}, 62))),
        FN(concat({x[0], x[1], x[2]}, -1)));
  t.add(OpId::concat, "non-contiguous pieces", IN(leafT(N({3, 2}, 60)), leafS(N({2, 7}, 61)), leaf(N({2, 1}, 62))),
        FN(concat({x[0], x[1], x[2]}, 1)));
  t.add(OpId::concat, "with an empty piece", IN(leaf(N({2, 3}, 60)), leaf(N({0, 3}, 61)), leaf(N({1, 3}, 62))),
        FN(concat({x[0], x[1], x[2]}, 0)));
  t.add(OpId::concat, "1-D, same input twice", IN(leaf(N({3}, 60)), leaf(N({2}, 61))), FN(concat({x[0], x[1], x[0]})));
  t.add(OpId::concat, "only middle requires grad", IN(N({2, 2}, 60), leaf(N({2, 3}, 61)), N({2, 1}, 62)),
        FN(concat({x[0], x[1], x[2]}, 1)));

  t.add(OpId::stack, "3 inputs dim 0", IN(leaf(N({2, 3}, 63)), leaf(N({2, 3}, 64)), leaf(N({2, 3}, 65))),
        FN(stack({x[0], x[1], x[2]}, 0)));
  t.add(OpId::stack, "dim -1", IN(leaf(N({2, 3}, 63)), leaf(N({2, 3}, 64))), FN(stack({x[0], x[1]}, -1)));
  t.add(OpId::stack, "dim 1, non-contiguous", IN(leafT(N({3, 2}, 63)), leafS(N({2, 7}, 64))),
        FN(stack({x[0], x[1]}, 1)));
  t.add(OpId::stack, "0-d inputs", IN(leaf(N({}, 63)), leaf(N({}, 64)), leaf(N({}, 65))),
        FN(stack({x[0], x[1], x[2]})));

  // ---------------------------------------------------------------- views and copies
  t.add(OpId::reshape, "[2,3,4] -> [6,-1]", IN(leaf(N({2, 3, 4}, 70))), FN(reshape(x[0], {6, -1})));
  t.add(OpId::reshape, "transposed -> [12] (copies)", IN(leafT(N({4, 3}, 70))), FN(reshape(x[0], {12})));
  t.add(OpId::reshape, "0-d -> [1,1]", IN(leaf(N({}, 70))), FN(reshape(x[0], {1, 1})));
  t.add(OpId::reshape, "view [6] -> [3,2]", IN(leaf(N({6}, 70))), FN(view(x[0], {3, 2})));
  t.add(OpId::reshape, "flatten a strided leaf", IN(leafS(N({2, 7}, 70))), FN(x[0].flatten()));
  t.add(OpId::reshape, "view of a transposed leaf splitting a dim", IN(leafT(N({4, 3}, 70))), FN(x[0].view({3, 2, 2})));

  t.add(OpId::transpose, "(0,1) of [2,3]", IN(leaf(N({2, 3}, 71))), FN(transpose(x[0], 0, 1)));
  t.add(OpId::transpose, "(-1,0) of [2,3,4]", IN(leaf(N({2, 3, 4}, 71))), FN(transpose(x[0], -1, 0)));
  t.add(OpId::transpose, "(1,1) no-op", IN(leaf(N({2, 3}, 71))), FN(transpose(x[0], 1, 1)));
  t.add(OpId::transpose, "of a transposed leaf, then square", IN(leafT(N({3, 2}, 71))),
        FN(square(x[0].transpose(0, 1))));

  t.add(OpId::permute, "{2,0,1}", IN(leaf(N({2, 3, 4}, 72))), FN(permute(x[0], {2, 0, 1})));
  t.add(OpId::permute, "negative dims {-1,0,1}", IN(leaf(N({2, 3, 4}, 72))), FN(permute(x[0], {-1, 0, 1})));
  t.add(OpId::permute, "of a strided leaf", IN(leafS(N({3, 9}, 72))), FN(x[0].permute({1, 0})));

  t.add(OpId::narrow, "dim 1 [1,3)", IN(leaf(N({3, 4}, 73))), FN(narrow(x[0], 1, 1, 2)));
  t.add(OpId::narrow, "dim -1 negative start", IN(leaf(N({2, 3, 4}, 73))), FN(narrow(x[0], -1, -2, 2)));
  t.add(OpId::narrow, "dim 0 of a transposed leaf", IN(leafT(N({3, 4}, 73))), FN(x[0].narrow(0, 1, 3)));

  t.add(OpId::slice, "dim 1 step 2", IN(leaf(N({3, 5}, 74))), FN(slice(x[0], 1, 0, 5, 2)));
  t.add(OpId::slice, "negative start, step 3", IN(leaf(N({2, 7}, 74))), FN(slice(x[0], -1, -6, 7, 3)));
  t.add(OpId::slice, "end past the size, step 1", IN(leaf(N({4, 2}, 74))), FN(slice(x[0], 0, 1, 100)));
  t.add(OpId::slice, "of a strided leaf, step 2", IN(leafS(N({3, 11}, 74))), FN(x[0].slice(1, 1, 5, 2)));

  t.add(OpId::select, "dim 0 index 1", IN(leaf(N({3, 4}, 75))), FN(select(x[0], 0, 1)));
  t.add(OpId::select, "dim -1 index -1", IN(leaf(N({2, 3, 4}, 75))), FN(select(x[0], -1, -1)));
  t.add(OpId::select, "1-D -> 0-d", IN(leaf(N({4}, 75))), FN(x[0].select(0, 2)));
  t.add(OpId::select, "of a transposed leaf", IN(leafT(N({4, 3}, 75))), FN(x[0].select(1, 3)));

  t.add(OpId::expand, "[3,1] -> [3,4]", IN(leaf(N({3, 1}, 76))), FN(expand(x[0], {3, 4})));
  t.add(OpId::expand, "[4] -> [2,3,4]", IN(leaf(N({4}, 76))), FN(expand(x[0], {2, 3, 4})));
  t.add(OpId::expand, "[3,1] -> [2,-1,4]", IN(leaf(N({3, 1}, 76))), FN(x[0].expand({2, -1, 4})));
  t.add(OpId::expand, "0-d -> [2,2]", IN(leaf(N({}, 76))), FN(expand(x[0], {2, 2})));
  t.add(OpId::expand, "same shape", IN(leaf(N({2, 3}, 76))), FN(expand(x[0], {2, 3})));

  t.add(OpId::squeeze, "dim 1 of [2,1,3]", IN(leaf(N({2, 1, 3}, 77))), FN(squeeze(x[0], 1)));
  t.add(OpId::squeeze, "all of [1,3,1]", IN(leaf(N({1, 3, 1}, 77))), FN(squeeze(x[0])));
  t.add(OpId::squeeze, "dim -1 of size 3 (no-op)", IN(leaf(N({2, 3}, 77))), FN(x[0].squeeze(-1)));
  t.add(OpId::squeeze, "[1] -> 0-d", IN(leaf(N({1}, 77))), FN(x[0].squeeze()));

  t.add(OpId::unsqueeze, "dim 0", IN(leaf(N({2, 3}, 78))), FN(unsqueeze(x[0], 0)));
  t.add(OpId::unsqueeze, "dim -1", IN(leaf(N({2, 3}, 78))), FN(unsqueeze(x[0], -1)));
  t.add(OpId::unsqueeze, "dim 1 of a transposed leaf", IN(leafT(N({3, 2}, 78))), FN(x[0].unsqueeze(1)));
  t.add(OpId::unsqueeze, "0-d -> [1]", IN(leaf(N({}, 78))), FN(unsqueeze(x[0], 0)));

  t.add(OpId::contiguous, "transposed leaf", IN(leafT(N({3, 2}, 79))), FN(contiguous(x[0])));
  t.add(OpId::contiguous, "strided leaf", IN(leafS(N({2, 7}, 79))), FN(x[0].contiguous()));
  t.add(OpId::contiguous, "already contiguous (identity)", IN(leaf(N({2, 3}, 79))), FN(contiguous(x[0]) * 2.0));

  t.add(OpId::clone, "[2,3]", IN(leaf(N({2, 3}, 80))), FN(clone(x[0])));
  t.add(OpId::clone, "transposed leaf", IN(leafT(N({3, 2}, 80))), FN(x[0].clone()));
  t.add(OpId::clone, "0-d", IN(leaf(N({}, 80))), FN(clone(x[0])));

  // Through float32: central differences need a step far above float32's resolution.
  GradcheckOptions f32 = {.eps = 1e-3, .atol = 1e-4, .rtol = 1e-3};
  t.add(OpId::to_dtype, "float64 -> float32 -> float64", IN(leaf(N({2, 3}, 81))),
        FN(to_dtype(to_dtype(x[0], kFloat32), kFloat64)), f32);
  t.add(OpId::to_dtype, "through float32, transposed, times 3", IN(leafT(N({3, 2}, 81))),
        FN((x[0].to(kFloat32) * 3.0).to(kFloat64)), f32);
  t.add(OpId::to_dtype, "float64 -> float64 (no-op)", IN(leaf(N({2, 3}, 81))), FN(to_dtype(x[0], kFloat64) * 2.0));

  t.add(OpId::to_device, "cpu -> cpu (no-op)", IN(leaf(N({2, 3}, 82))), FN(to_device(x[0], kCPU) * 2.0));
  if (build_info().cuda_devices > 0) {
    t.add(OpId::to_device, "cpu -> cuda:0 -> cpu", IN(leaf(N({2, 3}, 82))),
          FN(to_device(square(to_device(x[0], Device("cuda:0"))), kCPU)));
  }

  // ---------------------------------------------------------------- convolution and pooling (NCHW)
  t.add(OpId::unfold2d, "[1,1,4,4] k3", IN(leaf(N({1, 1, 4, 4}, 100))), FN(unfold2d(x[0], 3)));
  t.add(OpId::unfold2d, "[2,3,5,4] k(2,3) stride (2,1) pad (1,0)", IN(leaf(N({2, 3, 5, 4}, 100))),
        FN(unfold2d(x[0], {2, 3}, {2, 1}, {1, 0})));
  t.add(OpId::unfold2d, "[1,2,5,5] k2 dilation 2 pad 1 stride 2", IN(leaf(N({1, 2, 5, 5}, 100))),
        FN(unfold2d(x[0], 2, 2, 1, 2)));
  t.add(OpId::unfold2d, "transposed leaf [1,2,5,4] k3 pad 1", IN(leafT(N({1, 2, 4, 5}, 100))),
        FN(unfold2d(x[0], 3, 1, 1)));

  t.add(OpId::fold2d, "[1,9,4] -> 4x4 k3", IN(leaf(N({1, 9, 4}, 101))), FN(fold2d(x[0], 4, 3)));
  t.add(OpId::fold2d, "[2,18,6] -> 5x4 k(2,3) stride (2,1) pad (1,0)", IN(leaf(N({2, 18, 6}, 101))),
        FN(fold2d(x[0], {5, 4}, {2, 3}, {2, 1}, {1, 0})));
  t.add(OpId::fold2d, "[1,8,9] -> 5x5 k2 dilation 2 pad 1 stride 2", IN(leaf(N({1, 8, 9}, 101))),
        FN(fold2d(x[0], 5, 2, 2, 1, 2)));
  t.add(OpId::fold2d, "transposed leaf [1,4,9] -> 4x4 k2", IN(leafT(N({1, 9, 4}, 101))), FN(fold2d(x[0], 4, 2)));

  t.add(OpId::conv2d, "[1,1,4,4] * [1,1,3,3], no bias", IN(leaf(N({1, 1, 4, 4}, 102)), leaf(N({1, 1, 3, 3}, 103))),
        FN(conv2d(x[0], x[1])));
  t.add(OpId::conv2d, "[2,3,5,5] * [4,3,3,3] + bias, stride 2 pad 1",
        IN(leaf(N({2, 3, 5, 5}, 102)), leaf(N({4, 3, 3, 3}, 103)), leaf(N({4}, 104))),
        FN(conv2d(x[0], x[1], x[2], 2, 1)));
  t.add(OpId::conv2d, "[2,2,5,4] * [3,2,2,3] + bias, stride (2,1) pad (1,0)",
        IN(leaf(N({2, 2, 5, 4}, 102)), leaf(N({3, 2, 2, 3}, 103)), leaf(N({3}, 104))),
        FN(conv2d(x[0], x[1], x[2], {2, 1}, {1, 0})));
  t.add(OpId::conv2d, "transposed input, dilation 2 pad 2",
        IN(leafT(N({1, 2, 5, 4}, 102)), leaf(N({2, 2, 2, 2}, 103)), leaf(N({2}, 104))),
        FN(conv2d(x[0], x[1], x[2], 1, 2, 2)));
  t.add(OpId::conv2d, "only weight and bias require grad",
        IN(N({2, 2, 4, 4}, 102), leaf(N({3, 2, 3, 3}, 103)), leaf(N({3}, 104))), FN(conv2d(x[0], x[1], x[2], 1, 1)));
  t.add(OpId::conv2d, "only the input requires grad", IN(leaf(N({2, 2, 4, 4}, 102)), N({3, 2, 3, 3}, 103), N({3}, 104)),
        FN(conv2d(x[0], x[1], x[2], 1, 1)));
  // Stride 1 keeping the image's size: the input gradient is a convolution with the flipped weight.
  t.add(OpId::conv2d, "[2,3,5,6] * [2,3,3,5] + bias, pad (2,2) dilation (2,1): same size",
        IN(leaf(N({2, 3, 5, 6}, 102)), leaf(N({2, 3, 3, 5}, 103)), leaf(N({2}, 104))),
        FN(conv2d(x[0], x[1], x[2], 1, {2, 2}, {2, 1})));
  t.add(OpId::conv2d, "[3,2,7,6] * [2,2,2,3] + bias, stride (2,1) pad 1 dilation (2,1)",
        IN(leaf(N({3, 2, 7, 6}, 102)), leaf(N({2, 2, 2, 3}, 103)), leaf(N({2}, 104))),
        FN(conv2d(x[0], x[1], x[2], {2, 1}, 1, {2, 1})));

  t.add(OpId::conv2d, "per task: [2,1,3,4,4] * [2,2,3,3,3] + [2,2] bias, pad 1",
        IN(leaf(N({2, 1, 3, 4, 4}, 102)), leaf(N({2, 2, 3, 3, 3}, 103)), leaf(N({2, 2}, 104))),
        FN(conv2d(x[0], x[1], x[2], 1, 1)));
  // 8 channels in and out on 3x3 images: the CPU takes Winograd F(4x4) for every convolution.
  t.add(OpId::conv2d, "[1,8,3,3] * [8,8,3,3] + bias, pad 1 (Winograd)",
        IN(leaf(N({1, 8, 3, 3}, 102)), leaf(N({8, 8, 3, 3}, 103)), leaf(N({8}, 104))),
        FN(conv2d(x[0], x[1], x[2], 1, 1)));

  // The adjoints of conv2d, on the geometries above: grad is the output gradient of the
  // convolution named.
  t.add(OpId::conv2d_input_grad, "of [2,3,5,5] * [4,3,3,3] stride 2 pad 1",
        IN(leaf(N({2, 4, 3, 3}, 109)), leaf(N({4, 3, 3, 3}, 110))), FN(conv2d_input_grad(x[0], x[1], 5, 2, 1)));
  t.add(OpId::conv2d_input_grad, "of [2,2,5,4] * [3,2,2,3] stride (2,1) pad (1,0)",
        IN(leaf(N({2, 3, 3, 2}, 109)), leaf(N({3, 2, 2, 3}, 110))),
        FN(conv2d_input_grad(x[0], x[1], {5, 4}, {2, 1}, {1, 0})));
  t.add(OpId::conv2d_input_grad, "of [1,2,5,4] * [2,2,2,2] dilation 2 pad 2, transposed grad",
        IN(leafT(N({1, 2, 6, 7}, 109)), leaf(N({2, 2, 2, 2}, 110))),
        FN(conv2d_input_grad(x[0], x[1], {5, 4}, 1, 2, 2)));
  t.add(OpId::conv2d_input_grad, "same size (a convolution with the flipped weight), only grad requires grad",
        IN(leaf(N({2, 2, 4, 4}, 109)), N({2, 3, 3, 3}, 110)), FN(conv2d_input_grad(x[0], x[1], 4, 1, 1)));
  t.add(OpId::conv2d_input_grad, "same size, only the weight requires grad",
        IN(N({2, 2, 4, 4}, 109), leaf(N({2, 3, 3, 3}, 110))), FN(conv2d_input_grad(x[0], x[1], 4, 1, 1)));
  t.add(OpId::conv2d_input_grad, "per task: [2,1,2,4,4] with [2,2,3,3,3] pad 1",
        IN(leaf(N({2, 1, 2, 4, 4}, 109)), leaf(N({2, 2, 3, 3, 3}, 110))), FN(conv2d_input_grad(x[0], x[1], 4, 1, 1)));
  t.add(OpId::conv2d_input_grad, "[1,8,3,3] with [8,8,3,3] pad 1 (Winograd)",
        IN(leaf(N({1, 8, 3, 3}, 109)), leaf(N({8, 8, 3, 3}, 110))), FN(conv2d_input_grad(x[0], x[1], 3, 1, 1)));

  t.add(OpId::conv2d_weight_grad, "of [2,3,5,5] * [4,3,3,3] stride 2 pad 1",
        IN(leaf(N({2, 4, 3, 3}, 111)), leaf(N({2, 3, 5, 5}, 112))), FN(conv2d_weight_grad(x[0], x[1], 3, 2, 1)));
  t.add(OpId::conv2d_weight_grad, "of [2,2,5,4] * [3,2,2,3] stride (2,1) pad (1,0)",
        IN(leaf(N({2, 3, 3, 2}, 111)), leaf(N({2, 2, 5, 4}, 112))),
        FN(conv2d_weight_grad(x[0], x[1], {2, 3}, {2, 1}, {1, 0})));
  t.add(OpId::conv2d_weight_grad, "of [1,2,5,4] * [2,2,2,2] dilation 2 pad 2, transposed input",
        IN(leaf(N({1, 2, 7, 6}, 111)), leafT(N({1, 2, 4, 5}, 112))), FN(conv2d_weight_grad(x[0], x[1], 2, 1, 2, 2)));
  t.add(OpId::conv2d_weight_grad, "same size, only grad requires grad",
        IN(leaf(N({2, 2, 4, 4}, 111)), N({2, 3, 4, 4}, 112)), FN(conv2d_weight_grad(x[0], x[1], 3, 1, 1)));
  t.add(OpId::conv2d_weight_grad, "same size, only the input requires grad",
        IN(N({2, 2, 4, 4}, 111), leaf(N({2, 3, 4, 4}, 112))), FN(conv2d_weight_grad(x[0], x[1], 3, 1, 1)));
  t.add(OpId::conv2d_weight_grad, "per task: [2,1,2,4,4] over [2,1,3,4,4] pad 1",
        IN(leaf(N({2, 1, 2, 4, 4}, 111)), leaf(N({2, 1, 3, 4, 4}, 112))), FN(conv2d_weight_grad(x[0], x[1], 3, 1, 1)));
  t.add(OpId::conv2d_weight_grad, "[1,8,3,3] over [1,8,3,3] pad 1 (Winograd)",
        IN(leaf(N({1, 8, 3, 3}, 111)), leaf(N({1, 8, 3, 3}, 112))), FN(conv2d_weight_grad(x[0], x[1], 3, 1, 1)));

  // Random normal values: ties within a window (where the gradient is not defined) do not occur.
  t.add(OpId::max_pool2d, "[1,1,4,4] k2", IN(leaf(N({1, 1, 4, 4}, 105))), FN(max_pool2d(x[0], 2)));
  t.add(OpId::max_pool2d, "[2,3,5,5] k3 stride 2 pad 1", IN(leaf(N({2, 3, 5, 5}, 105))), FN(max_pool2d(x[0], 3, 2, 1)));
  t.add(OpId::max_pool2d, "[2,2,5,6] k(2,3) stride (1,2) pad (1,1)", IN(leaf(N({2, 2, 5, 6}, 105))),
        FN(max_pool2d(x[0], {2, 3}, {1, 2}, {1, 1})));
  t.add(OpId::max_pool2d, "overlapping windows k3 stride 1, transposed leaf", IN(leafT(N({1, 2, 5, 4}, 105))),
        FN(max_pool2d(x[0], 3, 1)));
  t.add(OpId::max_pool2d, "k2 dilation 2", IN(leaf(N({1, 2, 5, 5}, 105))), FN(max_pool2d(x[0], 2, 1, 0, 2)));
  t.add(OpId::max_pool2d, "[2,3,6,8] k2 (the 2x2 stride-2 loop)", IN(leaf(N({2, 3, 6, 8}, 106))),
        FN(max_pool2d(x[0], 2)));
  // Indices of overlapping windows repeat positions, which then sum.
  t.add(OpId::max_unpool2d, "[1,2,4,3] from k3 stride 1 pad 1 pooling of a [1,2,4,3]",
        IN(leaf(N({1, 2, 4, 3}, 107)), max_pool2d_with_indices(N({1, 2, 4, 3}, 108), 3, 1, 1).second),
        FN(max_unpool2d(x[0], x[1], {4, 3})));
  t.add(OpId::max_unpool2d, "[2,2,2,3] into 4x6",
        IN(leaf(N({2, 2, 2, 3}, 107)), max_pool2d_with_indices(N({2, 2, 4, 6}, 108), 2, 2).second),
        FN(max_unpool2d(x[0], x[1], {4, 6})));

  return std::move(t.entries);
}

#undef IN
#undef FN

inline const std::vector<GradcheckEntry>& table() {
  static const std::vector<GradcheckEntry> entries = build_table();
  return entries;
}


}  // namespace mg::testing
