// Losses: values by hand, PyTorch's reduction and ignore_index rules, numerical stability, and
// first and second derivatives (float64).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "../nn/losses.h"
#include "check_error.h"
#include "nn_test_util.h"

using namespace mg;
using namespace mg::nn;
using namespace mg::nn::test;

namespace {

Tensor I64(const std::vector<int64_t>& v, const Shape& s) { return tensor(v, s); }

void check_loss_grads(const TensorFunction& f, const TensorList& inputs) {
  GradcheckResult first = gradcheck(f, inputs);
  INFO(first.message);
  CHECK(first.ok);
  GradcheckResult second = gradgradcheck(f, inputs);
  INFO(second.message);
  CHECK(second.ok);
}

// -log softmax(x)[c] for one row.
double nll_of_row(const std::vector<double>& row, int64_t c) {
  double m = row[0];
  for (double v : row) m = std::max(m, v);
  double s = 0;
  for (double v : row) s += std::exp(v - m);
  return -(row[static_cast<std::size_t>(c)] - m - std::log(s));
}

// The per-row cross-entropy written as its definition in unfused ops: log_softmax, gather, mask.
Tensor composite_cross_entropy_rows(const Tensor& logits, const Tensor& target, int64_t ignore_index) {
  const Tensor kept = ne(target, full({}, static_cast<double>(ignore_index), kInt64));
  const Tensor safe = where(kept, target, zeros({}, kInt64));
  const Tensor picked = squeeze(gather(log_softmax(logits, -1), -1, unsqueeze(safe, -1)), -1);
  return neg(picked) * to_dtype(kept, logits.dtype());
}

}  // namespace

TEST_CASE("cross_entropy_rows: fused kernels against the composite, float32 and float64") {
  struct Case {
    const char* name;
    Shape shape;        // of the logits as generated
    bool classes_in_1;  // move dim 1 last before the op (a non-contiguous input)
    int64_t ignore_index;
  };
  // Rows shorter than, equal to and longer than a vector (16 lanes) with a tail; enough rows
  // (600 x 120) to go parallel; an ignore_index that is also a class.
  const Case cases[] = {{"[5,3]", {5, 3}, false, -100},
                        {"[7,16]", {7, 16}, false, 4},
                        {"[4,37]", {4, 37}, false, -100},
                        {"[2,3,19] classes last", {2, 3, 19}, false, -100},
                        {"[3,21,4] classes in dim 1", {3, 21, 4}, true, -100},
                        {"[600,120]", {600, 120}, false, -100}};
  for (DType dtype : {kFloat32, kFloat64}) {
    for (const Case& c : cases) {
      INFO(std::string(c.name) << " " << std::string(dtype_name(dtype)));
      const double tol = dtype == kFloat32 ? 2e-5 : 1e-12;
      Generator gen(21);
      Tensor source = (randn(c.shape, dtype, kCPU, &gen) * 3.0).requires_grad_();
      Tensor logits = c.classes_in_1 ? permute(source, {0, 2, 1}) : source;
      const int64_t classes = logits.shape().back();
      Shape rows(logits.shape().begin(), logits.shape().end() - 1);
      std::vector<int64_t> classes_of_rows = randint(0, classes, rows, kCPU, &gen).to_vector<int64_t>();
      for (std::size_t i = 0; i < classes_of_rows.size(); i += 3) classes_of_rows[i] = c.ignore_index;
      const Tensor target = I64(classes_of_rows, rows);
      const Tensor upstream = randn(rows, dtype, kCPU, &gen);

      const Tensor fused = cross_entropy_rows(logits, target, c.ignore_index);
      const Tensor composite = composite_cross_entropy_rows(logits, target, c.ignore_index);
      CHECK(fused.dtype() == dtype);
      check_close(fused, composite, tol, tol, "forward");

      const Tensor g_fused = grad({fused}, {source}, {upstream}, {.retain_graph = true})[0];
      const Tensor g_composite = grad({composite}, {source}, {upstream}, {.retain_graph = true})[0];
      check_close(g_fused, g_composite, tol, tol, "first-order backward (fused kernel)");
      const Tensor g_recorded = grad({fused}, {source}, {upstream}, {.create_graph = true})[0];
      check_close(g_recorded, g_fused, tol, tol, "create_graph backward == fused backward");
    }
  }
}

TEST_CASE("cross_entropy_rows: float32 rows with terms below the normal range, forward and backward") {
  // Rows whose exp(x - lse) spans normal, subnormal and underflowing terms (the vectorised exp
  // redoes such a row with its full-range form), one with a -inf logit, between ordinary rows;
  // 40 classes: two 16-lane blocks and a tail. Checked against the float64 definition.
  const int64_t classes = 40;
  std::vector<double> x;  // float32 values
  for (int64_t r = 0; r < 5; ++r) {
    for (int64_t c = 0; c < classes; ++c) {
      const double t = static_cast<double>(c) / (classes - 1);
      double v = std::cos(1.7 * static_cast<double>(c + r));
      if (r == 1) v = -130.0 * t;  // down to exp(-130): subnormal and underflowing terms
      if (r == 3) v = c == 7 ? -INFINITY : 2.0 * std::sin(3.0 * static_cast<double>(c));
      x.push_back(static_cast<float>(v));
    }
  }
  const std::vector<int64_t> targets = {3, 0, 39, 12, 20};
  const std::vector<double> upstream = {0.5, -1.25, 2.0, 0.75, -0.3};
  Tensor logits = tensor(x, {5, classes}, kFloat32).requires_grad_();
  const Tensor loss = cross_entropy_rows(logits, I64(targets, {5}), -100);
  const std::vector<double> got_loss = loss.to_vector();
  const std::vector<double> got_grad = grad({loss}, {logits}, {tensor(upstream, {5}, kFloat32)})[0].to_vector();
  for (int64_t r = 0; r < 5; ++r) {
    CAPTURE(r);
    const std::vector<double> row(x.begin() + r * classes, x.begin() + (r + 1) * classes);
    CHECK(got_loss[r] == doctest::Approx(nll_of_row(row, targets[r])).epsilon(1e-6));
    const double lse = row[static_cast<std::size_t>(targets[r])] + nll_of_row(row, targets[r]);
    for (int64_t c = 0; c < classes; ++c) {
      CAPTURE(c);
      const double p = std::exp(row[static_cast<std::size_t>(c)] - lse);
      const double want = upstream[r] * (p - (c == targets[r] ? 1.0 : 0.0));
      // Relative: float32's rounding of x - lse, up to half an ulp of 128 (3.8e-6) in the exponent.
      CHECK(std::abs(got_grad[r * classes + c] - want) <= 1e-5 * std::abs(want) + 1e-44);
    }
  }
}

TEST_CASE("cross_entropy_rows: rejects bad targets and logits") {
  Tensor logits = randn64({4, 3}, 22);
  Tensor target = I64({0, 2, 1, 2}, {4});
  CHECK_MG_ERROR(cross_entropy_rows(logits, to_dtype(target, kFloat64)), "cross_entropy_rows", "int64", "float64");
  CHECK_MG_ERROR(cross_entropy_rows(logits, I64({0, 1, 2}, {3})), "cross_entropy_rows", "[3]", "[4,3]", "expected [4]");
  CHECK_MG_ERROR(cross_entropy_rows(logits, I64({0, 1, 2, 0}, {2, 2})), "cross_entropy_rows", "[2,2]", "[4,3]");
  CHECK_MG_ERROR(cross_entropy_rows(logits, I64({0, 3, 1, 2}, {4})), "cross_entropy_rows", "target 3", "3 classes",
                 "ignore_index is -100");
  CHECK_MG_ERROR(cross_entropy_rows(logits, I64({0, -1, 1, 2}, {4})), "cross_entropy_rows", "target -1", "3 classes");
  CHECK_MG_ERROR(cross_entropy_rows(logits, I64({0, -100, 1, 2}, {4}), 5), "cross_entropy_rows", "target -100",
                 "ignore_index is 5");
  CHECK_MG_ERROR(cross_entropy_rows(randn64({}, 23), zeros({}, kInt64)), "cross_entropy_rows", "0-d");
  CHECK_MG_ERROR(cross_entropy_rows(I64({0, 1, 2, 0}, {2, 2}), I64({0, 1}, {2})), "cross_entropy_rows", "int64");
  // Through nn::cross_entropy: the value and the class count are named.
  CHECK_MG_ERROR(cross_entropy(logits, I64({0, 7, 1, 2}, {4})), "cross_entropy", "target 7", "3 classes");
}

TEST_CASE("mse_loss") {
  Tensor a = values({1, 2, 3, 4}, {2, 2}, kFloat64), b = values({0, 2, 5, 1}, {2, 2}, kFloat64);
  CHECK(mse_loss(a, b).item() == doctest::Approx((1.0 + 0 + 4 + 9) / 4));
  CHECK(mse_loss(a, b, Reduction::Sum).item() == doctest::Approx(14.0));
  CHECK(mse_loss(a, b, Reduction::None).values_as_double() == std::vector<double>{1, 0, 4, 9});
  CHECK_THROWS_AS(mse_loss(a, zeros({4}, kFloat64)), Error);
  check_loss_grads([](const TensorList& x) { return mse_loss(x[0], x[1]); },
                   {randn64({2, 3}, 1).requires_grad_(), randn64({2, 3}, 2).requires_grad_()});
}

TEST_CASE("cross_entropy and nll_loss: values, reductions, ignore_index, class weights") {
  Tensor logits = randn64({4, 3}, 3);
  Tensor target = I64({0, 2, 1, 2}, {4});
  std::vector<double> x = logits.values_as_double();
  std::vector<double> per;
  for (int64_t i = 0; i < 4; ++i)
    per.push_back(nll_of_row({x.begin() + 3 * i, x.begin() + 3 * i + 3}, target.to_vector<int64_t>()[i]));
  const double total = per[0] + per[1] + per[2] + per[3];
  CHECK(cross_entropy(logits, target).item() == doctest::Approx(total / 4).epsilon(1e-12));
  CHECK(cross_entropy(logits, target, {.reduction = Reduction::Sum}).item() == doctest::Approx(total).epsilon(1e-12));
  std::vector<double> none = cross_entropy(logits, target, {.reduction = Reduction::None}).values_as_double();
  for (int i = 0; i < 4; ++i) CHECK(none[i] == doctest::Approx(per[i]).epsilon(1e-12));
  CHECK(nll_loss(log_softmax(logits, 1), target).item() == doctest::Approx(total / 4).epsilon(1e-12));

  // Ignored targets contribute nothing, also to the mean's denominator.
  Tensor ignored = I64({0, -100, 1, 2}, {4});
  CHECK(cross_entropy(logits, ignored).item() == doctest::Approx((per[0] + per[2] + per[3]) / 3).epsilon(1e-12));
  CHECK(cross_entropy(logits, I64({0, 7, 1, 7}, {4}), {.ignore_index = 7}).item() ==
        doctest::Approx((per[0] + per[2]) / 2).epsilon(1e-12));
  CHECK(std::isnan(cross_entropy(logits, I64({-100, -100, -100, -100}, {4})).item()));  // as PyTorch: 0 / 0

  // Class weights: the mean divides by the weights of the targets.
  Tensor w = values({0.5, 2.0, 1.0}, {3}, kFloat64);
  const double wsum = 0.5 * per[0] + 1.0 * per[1] + 2.0 * per[2] + 1.0 * per[3];
  CHECK(cross_entropy(logits, target, {.weight = w}).item() == doctest::Approx(wsum / 4.5).epsilon(1e-12));

  // Spatial [N, C, d] and unbatched [C] inputs.
  Tensor spatial = randn64({2, 3, 2}, 4);
  Tensor st = I64({0, 2, 1, 1}, {2, 2});
  Tensor flat = reshape(permute(spatial, {0, 2, 1}), {4, 3});
  CHECK(cross_entropy(spatial, st).item() ==
        doctest::Approx(cross_entropy(flat, reshape(st, {4})).item()).epsilon(1e-12));
  CHECK(cross_entropy(select(logits, 0, 1), I64({2}, {1}).squeeze()).item() == doctest::Approx(per[1]).epsilon(1e-12));

  CHECK_THROWS_AS(cross_entropy(logits, I64({0, 3, 1, 2}, {4})), Error);
  CHECK_THROWS_AS(cross_entropy(logits, I64({0, 1, 2}, {3})), Error);
  CHECK_THROWS_AS(cross_entropy(logits, to_dtype(target, kFloat64)), Error);
  CHECK_THROWS_AS(cross_entropy(logits, target, {.label_smoothing = 1.5}), Error);
}

TEST_CASE("cross_entropy: label smoothing and probability targets") {
  Tensor logits = randn64({3, 4}, 5);
  Tensor target = I64({1, 3, 0}, {3});
  const double s = 0.2;
  // Smoothing == a probability target (1 - s) one_hot + s / C.
  std::vector<double> probs(12, s / 4);
  for (int i = 0; i < 3; ++i) probs[static_cast<std::size_t>(i * 4 + target.to_vector<int64_t>()[i])] += 1 - s;
  Tensor soft = values(probs, {3, 4}, kFloat64);
  for (Reduction r : {Reduction::Mean, Reduction::Sum, Reduction::None})
    check_close(cross_entropy(logits, target, {.reduction = r, .label_smoothing = s}),
                cross_entropy(logits, soft, {.reduction = r}), 1e-12, 1e-12, "smoothing == soft target");
  // A probability target with smoothing smooths the probabilities.
  check_close(cross_entropy(logits, soft, {.label_smoothing = 0.1}), cross_entropy(logits, soft * 0.9 + 0.1 / 4), 1e-12,
              1e-12, "soft target smoothing");
  // With ignore_index and smoothing, the ignored row is left out of both terms.
  Tensor with_ignored = I64({1, -100, 0}, {3});
  Tensor kept = cross_entropy(index_select(logits, 0, I64({0, 2}, {2})), I64({1, 0}, {2}), {.label_smoothing = s});
  check_close(cross_entropy(logits, with_ignored, {.label_smoothing = s}), kept, 1e-12, 1e-12, "smoothing + ignore");
}

TEST_CASE("losses: gradcheck and gradgradcheck") {
  Tensor logits = randn64({3, 4}, 6).requires_grad_();
  Tensor target = I64({1, 3, 0}, {3});
  Tensor ignored = I64({1, -100, 0}, {3});
  Tensor w = values({0.5, 2.0, 1.0, 1.5}, {4}, kFloat64);
  check_loss_grads([&](const TensorList& x) { return cross_entropy(x[0], target); }, {logits});
  check_loss_grads(
      [&](const TensorList& x) { return cross_entropy(x[0], ignored, {.weight = w, .label_smoothing = 0.1}); },
      {logits});
  check_loss_grads(
      [&](const TensorList& x) {
        return cross_entropy(x[0], target, {.reduction = Reduction::None, .label_smoothing = 0.3});
      },
      {logits});
  Tensor soft = softmax(randn64({3, 4}, 7), 1).detach().requires_grad_();
  check_loss_grads([&](const TensorList& x) { return cross_entropy(x[0], x[1], {.reduction = Reduction::Sum}); },
                   {logits, soft});
  check_loss_grads([&](const TensorList& x) { return nll_loss(log_softmax(x[0], 1), ignored, {.weight = w}); },
                   {logits});
  Tensor spatial = randn64({2, 3, 2}, 8).requires_grad_();
  check_loss_grads([&](const TensorList& x) { return cross_entropy(x[0], I64({0, 2, 1, 1}, {2, 2})); }, {spatial});
  Tensor y = values({0, 1, 1, 0, 0.3, 1}, {2, 3}, kFloat64);
  check_loss_grads(
      [&](const TensorList& x) {
        return binary_cross_entropy_with_logits(x[0], y, {.pos_weight = values({1.0, 2.0, 0.5}, {3}, kFloat64)});
      },
      {randn64({2, 3}, 9).requires_grad_()});
  check_loss_grads([&](const TensorList& x) { return binary_cross_entropy_with_logits(x[0], x[1]); },
                   {randn64({2, 3}, 10).requires_grad_(), y.clone().requires_grad_()});
}

TEST_CASE("binary_cross_entropy_with_logits: definition and stability") {
  Tensor x = values({-2.0, 0.0, 3.0}, {3}, kFloat64), t = values({0.0, 1.0, 0.25}, {3}, kFloat64);
  std::vector<double> xv = x.values_as_double(), tv = t.values_as_double(),
                      none = binary_cross_entropy_with_logits(x, t, {.reduction = Reduction::None}).values_as_double();
  for (int i = 0; i < 3; ++i) {
    const double p = 1.0 / (1.0 + std::exp(-xv[i]));
    CHECK(none[i] == doctest::Approx(-(tv[i] * std::log(p) + (1 - tv[i]) * std::log(1 - p))).epsilon(1e-12));
  }
  // pos_weight scales the positive term; weight scales each element.
  Tensor pw = values({3.0}, {1}, kFloat64);
  std::vector<double> weighted =
      binary_cross_entropy_with_logits(
          x, t, {.weight = values({1, 2, 3}, {3}, kFloat64), .pos_weight = pw, .reduction = Reduction::None})
          .values_as_double();
  for (int i = 0; i < 3; ++i) {
    const double p = 1.0 / (1.0 + std::exp(-xv[i]));
    CHECK(weighted[i] ==
          doctest::Approx((i + 1) * -(3.0 * tv[i] * std::log(p) + (1 - tv[i]) * std::log(1 - p))).epsilon(1e-12));
  }
  // Huge logits stay finite, with the right limits, and so do their gradients.
  Tensor big = values({1000.0, -1000.0, 1000.0, -1000.0}, {4}, kFloat32).requires_grad_();
  Tensor labels = values({1, 0, 0, 1}, {4}, kFloat32);
  Tensor l = binary_cross_entropy_with_logits(big, labels, {.reduction = Reduction::None});
  CHECK(l.values_as_double() == std::vector<double>{0, 0, 1000, 1000});
  for (double g : grad({sum(l)}, {big})[0].values_as_double()) CHECK(std::isfinite(g));
}

TEST_CASE("accuracy") {
  Tensor logits = values({0.1, 0.9, 0.8, 0.2, 0.3, 0.7}, {3, 2});
  CHECK(accuracy(logits, I64({1, 0, 0}, {3})) == doctest::Approx(2.0 / 3.0));
  CHECK(accuracy(logits, I64({1, 0, 1}, {3})) == 1.0);
  CHECK_THROWS_AS(accuracy(logits, I64({1, 0}, {2})), Error);
}
