// Broadcasting binary ops: forward through kernels::binary, backward side by side.
#include "../tensor/kernels.h"
#include "ops.h"
#include "record.h"

namespace mg {
namespace {

Tensor scalar_for(double value, const Tensor& like) { return kernels::scalar_like(value, like); }

}  // namespace

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  MG_CHECK(lead >= 0, "sum_to: cannot reduce shape ", shape_str(x.shape()), " to ", shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (i < lead) {
      dims.push_back(i);
    } else {
      const int64_t target = shape[i - lead];
      MG_CHECK(target == x.size(i) || target == 1, "sum_to: cannot reduce shape ", shape_str(x.shape()), " to ",
               shape_str(shape));
      if (target == 1 && x.size(i) != 1) dims.push_back(i);
    }
  }
  Tensor reduced = dims.empty() ? x : sum(x, dims, /*keepdim=*/true);
  return reduced.shape() == shape ? reduced : reshape(reduced, shape);
}

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(BinaryOp::Add, a, b);
  if (should_record(a, b))
    record(OpId::add, {a, b}, out, {}, [sa = a.shape(), sb = b.shape()](const BackwardArgs& g) -> TensorList {
      return {g.needs_input(0) ? sum_to(g.grad, sa) : Tensor(), g.needs_input(1) ? sum_to(g.grad, sb) : Tensor()};
    });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(BinaryOp::Sub, a, b);
  if (should_record(a, b))
    record(OpId::sub, {a, b}, out, {}, [sa = a.shape(), sb = b.shape()](const BackwardArgs& g) -> TensorList {
      return {g.needs_input(0) ? sum_to(g.grad, sa) : Tensor(), g.needs_input(1) ? sum_to(neg(g.grad), sb) : Tensor()};
    });
  return out;
}

// One node for what an SGD step records as two (a scalar mul and a sub): in the inner loop of a
// small model, recorded again by every create_graph backward, nodes cost more than arithmetic.
Tensor sub_scaled(const Tensor& a, const Tensor& b, double alpha) {
  Tensor out = kernels::binary(BinaryOp::Sub, a, kernels::binary(BinaryOp::Mul, b, scalar_for(alpha, b)));
  if (should_record(a, b))
    record(OpId::sub_scaled, {a, b}, out, {},
           [sa = a.shape(), sb = b.shape(), alpha](const BackwardArgs& g) -> TensorList {
             return {g.needs_input(0) ? sum_to(g.grad, sa) : Tensor(),
                     g.needs_input(1) ? sum_to(g.grad * -alpha, sb) : Tensor()};
           });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(BinaryOp::Mul, a, b);
  if (should_record(a, b))
    record(OpId::mul, {a, b}, out, {a, b}, [sa = a.shape(), sb = b.shape()](const BackwardArgs& g) -> TensorList {
      const Tensor& x = g.saved[0];
      const Tensor& y = g.saved[1];
      return {g.needs_input(0) ? sum_to(g.grad * y, sa) : Tensor(), g.needs_input(1) ? sum_to(g.grad * x, sb) : Tensor()};
    });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(BinaryOp::Div, a, b);
  if (should_record(a, b))
    record(OpId::div, {a, b}, out, {a, b}, [sa = a.shape(), sb = b.shape()](const BackwardArgs& g) -> TensorList {
      const Tensor& x = g.saved[0];
      const Tensor& y = g.saved[1];
      return {g.needs_input(0) ? sum_to(g.grad / y, sa) : Tensor(),
              g.needs_input(1) ? sum_to(neg(g.grad) * x / (y * y), sb) : Tensor()};
    });
  return out;
}

// d(a^b)/da = b a^(b-1); d(a^b)/db = a^b log(a), taken as 0 where a <= 0 (where log is undefined,
// and where a = 0 the true one-sided limit is 0 for b > 0).
Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(BinaryOp::Pow, a, b);
  if (should_record(a, b))
    record(OpId::pow, {a, b}, out, {a, b}, [sa = a.shape(), sb = b.shape()](const BackwardArgs& g) -> TensorList {
      const Tensor& x = g.saved[0];
      const Tensor& y = g.saved[1];
      Tensor ga, gb;
      if (g.needs_input(0)) ga = sum_to(g.grad * y * pow(x, y - 1.0), sa);
      if (g.needs_input(1)) {
        Tensor positive = kernels::binary(BinaryOp::Gt, x, scalar_for(0.0, x));
        Tensor safe_x = where(positive, x, scalar_for(1.0, x));
        gb = sum_to(where(positive, g.grad * pow(x, y) * log(safe_x), scalar_for(0.0, x)), sb);
      }
      return {ga, gb};
    });
  return out;
}

Tensor pow(const Tensor& a, double exponent) { return pow(a, scalar_for(exponent, a)); }

// Ties split the gradient evenly, as PyTorch does.
Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(BinaryOp::Maximum, a, b);
  if (should_record(a, b))
    record(OpId::maximum, {a, b}, out, {a, b}, [sa = a.shape(), sb = b.shape()](const BackwardArgs& g) -> TensorList {
      Tensor share_a = kernels::binary(
          BinaryOp::Mul, kernels::binary(BinaryOp::Add, kernels::binary(BinaryOp::Gt, g.saved[0], g.saved[1]),
                                         kernels::binary(BinaryOp::Ge, g.saved[0], g.saved[1])),
          scalar_for(0.5, g.saved[0]));
      Tensor share_b = kernels::binary(BinaryOp::Sub, scalar_for(1.0, share_a), share_a);
      return {g.needs_input(0) ? sum_to(g.grad * share_a, sa) : Tensor(),
              g.needs_input(1) ? sum_to(g.grad * share_b, sb) : Tensor()};
    });
  return out;
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(BinaryOp::Minimum, a, b);
  if (should_record(a, b))
    record(OpId::minimum, {a, b}, out, {a, b}, [sa = a.shape(), sb = b.shape()](const BackwardArgs& g) -> TensorList {
      Tensor share_a = kernels::binary(
          BinaryOp::Mul, kernels::binary(BinaryOp::Add, kernels::binary(BinaryOp::Lt, g.saved[0], g.saved[1]),
                                         kernels::binary(BinaryOp::Le, g.saved[0], g.saved[1])),
          scalar_for(0.5, g.saved[0]));
      Tensor share_b = kernels::binary(BinaryOp::Sub, scalar_for(1.0, share_a), share_a);
      return {g.needs_input(0) ? sum_to(g.grad * share_a, sa) : Tensor(),
              g.needs_input(1) ? sum_to(g.grad * share_b, sb) : Tensor()};
    });
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor out = kernels::where(cond, a, b);
  if (should_record(a, b))
    record(OpId::where, {a, b}, out, {cond}, [sa = a.shape(), sb = b.shape()](const BackwardArgs& g) -> TensorList {
      Tensor zero = scalar_for(0.0, g.grad);
      return {g.needs_input(0) ? sum_to(where(g.saved[0], g.grad, zero), sa) : Tensor(),
              g.needs_input(1) ? sum_to(where(g.saved[0], zero, g.grad), sb) : Tensor()};
    });
  return out;
}

Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max) {
  MG_CHECK(!(min && max) || *min <= *max, "clamp: min ", min.value_or(0), " is greater than max ", max.value_or(0));
  Tensor out = x;
  if (min) out = kernels::binary(BinaryOp::Maximum, out, scalar_for(*min, x));
  if (max) out = kernels::binary(BinaryOp::Minimum, out, scalar_for(*max, x));
  if (!min && !max) out = kernels::clone(x);
  if (should_record(x))
    record(OpId::clamp, {x}, out, {x}, [min, max](const BackwardArgs& g) -> TensorList {
      const Tensor& v = g.saved[0];
      Tensor inside = ones_like(v);
      if (min) inside = kernels::binary(BinaryOp::Mul, inside, kernels::binary(BinaryOp::Ge, v, scalar_for(*min, v)));
      if (max) inside = kernels::binary(BinaryOp::Mul, inside, kernels::binary(BinaryOp::Le, v, scalar_for(*max, v)));
      return {g.grad * inside};
    });
  return out;
}

Tensor eq(const Tensor& a, const Tensor& b) { return kernels::binary(BinaryOp::Eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return kernels::binary(BinaryOp::Ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return kernels::binary(BinaryOp::Lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return kernels::binary(BinaryOp::Le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return kernels::binary(BinaryOp::Gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return kernels::binary(BinaryOp::Ge, a, b); }

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator+(const Tensor& a, double b) { return add(a, scalar_for(b, a)); }
Tensor operator-(const Tensor& a, double b) { return sub(a, scalar_for(b, a)); }
Tensor operator*(const Tensor& a, double b) { return mul(a, scalar_for(b, a)); }
Tensor operator/(const Tensor& a, double b) { return div(a, scalar_for(b, a)); }
Tensor operator+(double a, const Tensor& b) { return add(scalar_for(a, b), b); }
Tensor operator-(double a, const Tensor& b) { return sub(scalar_for(a, b), b); }
Tensor operator*(double a, const Tensor& b) { return mul(scalar_for(a, b), b); }
Tensor operator/(double a, const Tensor& b) { return div(scalar_for(a, b), b); }
Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator<(const Tensor& a, const Tensor& b) { return lt(a, b); }
Tensor operator<=(const Tensor& a, const Tensor& b) { return le(a, b); }
Tensor operator>(const Tensor& a, const Tensor& b) { return gt(a, b); }
Tensor operator>=(const Tensor& a, const Tensor& b) { return ge(a, b); }
Tensor operator<(const Tensor& a, double b) { return lt(a, scalar_for(b, a)); }
Tensor operator<=(const Tensor& a, double b) { return le(a, scalar_for(b, a)); }
Tensor operator>(const Tensor& a, double b) { return gt(a, scalar_for(b, a)); }
Tensor operator>=(const Tensor& a, double b) { return ge(a, scalar_for(b, a)); }

}  // namespace mg
