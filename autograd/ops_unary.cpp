// Unary ops: each forward kernel beside its derivative, written in differentiable ops so that
// higher derivatives follow. x is the saved input, y the saved output.
#include <cmath>
#include <numbers>

#include "../tensor/kernels.h"
#include "grad_mode.h"
#include "ops.h"
#include "record.h"

namespace mg {
namespace {

enum class Keep { Input, Output };

using Derivative = Tensor (*)(const Tensor& grad, const Tensor& kept);

Tensor unary_op(OpId id, UnaryOp kernel, const Tensor& x, Keep keep, Derivative derivative) {
  Tensor y = kernels::unary(kernel, x);
  if (should_record(x))
    record(id, {x}, y, {keep == Keep::Input ? x : y},
           [derivative](const BackwardArgs& g) -> TensorList { return {derivative(g.grad, g.saved[0])}; });
  return y;
}

Tensor zero_like_scalar(const Tensor& like) { return kernels::scalar_like(0.0, like); }

}  // namespace

Tensor neg(const Tensor& x) {
  Tensor y = kernels::unary(UnaryOp::Neg, x);
  if (should_record(x))
    record(OpId::neg, {x}, y, {}, [](const BackwardArgs& g) -> TensorList { return {neg(g.grad)}; });
  return y;
}

Tensor exp(const Tensor& x) {
  return unary_op(OpId::exp, UnaryOp::Exp, x, Keep::Output, [](const Tensor& g, const Tensor& y) { return g * y; });
}

Tensor log(const Tensor& x) {
  return unary_op(OpId::log, UnaryOp::Log, x, Keep::Input, [](const Tensor& g, const Tensor& x) { return g / x; });
}

Tensor sqrt(const Tensor& x) {
  return unary_op(OpId::sqrt, UnaryOp::Sqrt, x, Keep::Output,
                  [](const Tensor& g, const Tensor& y) { return g / (y * 2.0); });
}

// d/dx x^(-1/2) = -1/2 x^(-3/2) = -1/2 y^3
Tensor rsqrt(const Tensor& x) {
  return unary_op(OpId::rsqrt, UnaryOp::Rsqrt, x, Keep::Output,
                  [](const Tensor& g, const Tensor& y) { return g * (y * y * y) * -0.5; });
}

Tensor abs(const Tensor& x) {
  return unary_op(OpId::abs, UnaryOp::Abs, x, Keep::Input,
                  [](const Tensor& g, const Tensor& x) { return g * sign(x); });
}

Tensor sin(const Tensor& x) {
  return unary_op(OpId::sin, UnaryOp::Sin, x, Keep::Input, [](const Tensor& g, const Tensor& x) { return g * cos(x); });
}

Tensor cos(const Tensor& x) {
  return unary_op(OpId::cos, UnaryOp::Cos, x, Keep::Input,
                  [](const Tensor& g, const Tensor& x) { return neg(g * sin(x)); });
}

Tensor tanh(const Tensor& x) {
  return unary_op(OpId::tanh, UnaryOp::Tanh, x, Keep::Output,
                  [](const Tensor& g, const Tensor& y) { return g * (1.0 - y * y); });
}

Tensor sigmoid(const Tensor& x) {
  return unary_op(OpId::sigmoid, UnaryOp::Sigmoid, x, Keep::Output,
                  [](const Tensor& g, const Tensor& y) { return g * (y * (1.0 - y)); });
}

// g * (x > 0): one pass when nothing records; recorded, a product with the mask, which is
// piecewise constant, so relu's second derivative is zero, as it should be. Same bits either way.
Tensor relu(const Tensor& x) {
  return unary_op(OpId::relu, UnaryOp::Relu, x, Keep::Input, [](const Tensor& g, const Tensor& x) {
    if (!GradMode::is_enabled()) return kernels::binary(BinaryOp::MulPositiveMask, g, x);
    return g * kernels::binary(BinaryOp::Gt, x, zero_like_scalar(x));
  });
}

// gelu(x) = x Phi(x): derivative Phi(x) + x phi(x).
// Tanh form: 0.5 x (1 + t), t = tanh(k (x + c x^3)): derivative 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2).
Tensor gelu(const Tensor& x, GeluApproximation approximate) {
  if (approximate == GeluApproximation::Tanh)
    return unary_op(OpId::gelu_tanh, UnaryOp::GeluTanh, x, Keep::Input, [](const Tensor& g, const Tensor& x) {
      const double k = std::sqrt(2.0 / std::numbers::pi);
      const double c = 0.044715;
      Tensor x2 = x * x;
      Tensor t = tanh((x + x2 * x * c) * k);
      return g * ((1.0 + t) * 0.5 + x * (1.0 - t * t) * (1.0 + x2 * (3.0 * c)) * (0.5 * k));
    });
  return unary_op(OpId::gelu_erf, UnaryOp::GeluErf, x, Keep::Input, [](const Tensor& g, const Tensor& x) {
    const double inv_sqrt2 = 1.0 / std::numbers::sqrt2;
    const double inv_sqrt_2pi = 1.0 / std::sqrt(2.0 * std::numbers::pi);
    Tensor cdf = (1.0 + erf(x * inv_sqrt2)) * 0.5;
    Tensor pdf = exp(x * x * -0.5) * inv_sqrt_2pi;
    return g * (cdf + x * pdf);
  });
}

Tensor softplus(const Tensor& x) {
  return unary_op(OpId::softplus, UnaryOp::Softplus, x, Keep::Input,
                  [](const Tensor& g, const Tensor& x) { return g * sigmoid(x); });
}

Tensor erf(const Tensor& x) {
  return unary_op(OpId::erf, UnaryOp::Erf, x, Keep::Input, [](const Tensor& g, const Tensor& x) {
    return g * exp(neg(x * x)) * (2.0 / std::sqrt(std::numbers::pi));
  });
}

Tensor square(const Tensor& x) {
  return unary_op(OpId::square, UnaryOp::Square, x, Keep::Input,
                  [](const Tensor& g, const Tensor& x) { return g * x * 2.0; });
}

Tensor reciprocal(const Tensor& x) {
  return unary_op(OpId::reciprocal, UnaryOp::Reciprocal, x, Keep::Output,
                  [](const Tensor& g, const Tensor& y) { return neg(g * y * y); });
}

Tensor sign(const Tensor& x) { return kernels::unary(UnaryOp::Sign, x); }

}  // namespace mg
