// The image layers of the MAML conv4 model: Conv2d, MaxPool2d, BatchNorm2d (each statistics
// mode) and the unfold/fold pair under them. Checked three ways: against PyTorch 1.13
// (tests/fixtures/gen_conv_fixtures.py: outputs, first-order gradients, running statistics, and
// a second-order gradient through a whole conv block), by gradcheck/gradgradcheck through the
// layers run on an explicit parameter set (as a MAML inner loop runs them), and by the
// semantics and error messages written down in the headers.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../autograd/grad.h"
#include "../autograd/grad_mode.h"
#include "../autograd/gradcheck.h"
#include "../autograd/ops.h"
#include "../nn/batch_norm2d.h"
#include "../nn/conv2d.h"
#include "../nn/functional_conv.h"
#include "../nn/max_pool2d.h"
#include "../nn/safetensors.h"
#include "../tensor/creation.h"
#include "../tensor/cpu/cpu_kernels.h"
#include "../tensor/kernels.h"
#include "../tensor/threads.h"

namespace {

using namespace mg;
using namespace mg::nn;

// Runs fn; checks it throws mg::Error (not another exception) whose message contains each part.
void check_error(const char* expr, const std::function<void()>& fn, std::initializer_list<std::string_view> parts) {
  INFO(expr);
  try {
    fn();
    FAIL_CHECK("no exception");
  } catch (const Error& e) {
    const std::string message = e.what();
    INFO("message: " << message);
    for (std::string_view part : parts) CHECK_MESSAGE(message.find(part) != std::string::npos, "missing: " << part);
  } catch (const std::exception& e) {
    FAIL_CHECK("not an mg::Error: " << e.what());
  }
}
#define CHECK_ERROR(expr, ...) check_error(#expr, [&] { (void)(expr); }, {__VA_ARGS__})

Tensor N(const Shape& shape, uint64_t seed, DType dtype = kFloat64) {
  Generator gen(seed);
  return randn(shape, dtype, kCPU, &gen);
}

Tensor leaf(const Tensor& t) { return t.detach().requires_grad_(); }

// ---------------------------------------------------------------- PyTorch fixtures

// Tolerances against PyTorch. |actual - expected| <= rtol * |expected| + atol * scale, where
// scale is the largest |expected| in the tensor: the absolute floor covers entries that are sums
// cancelling to near zero, whose rounding error follows the size of the terms, not of the result.
struct Tolerance {
  double rtol, atol;
};
constexpr Tolerance kF32{1e-5, 1e-6};
constexpr Tolerance kF64{1e-10, 1e-13};

const TensorDict& fixture(DType dtype) {
  static const TensorDict f32 = load_safetensors(std::string(MG_FIXTURES_DIR) + "/conv_f32.safetensors").tensors;
  static const TensorDict f64 = load_safetensors(std::string(MG_FIXTURES_DIR) + "/conv_f64.safetensors").tensors;
  return dtype == kFloat32 ? f32 : f64;
}

Tolerance tolerance(DType dtype) { return dtype == kFloat32 ? kF32 : kF64; }

// The worst error seen per dtype, reported at the end of the fixture tests.
double worst_rel[2] = {0.0, 0.0};

double max_abs(const Tensor& t) {
  double m = 0.0;
  for (double v : t.values_as_double()) m = std::max(m, std::abs(v));
  return m;
}

// scale_floor raises the scale for quantities that are zero in exact arithmetic and so hold only
// rounding noise (a convolution's bias in front of batch norm has an exactly zero gradient).
void check_close(const Tensor& actual, const Tensor& expected, DType dtype, const std::string& what,
                 double scale_floor = 0.0) {
  INFO(what);
  REQUIRE(actual.defined());
  REQUIRE(expected.defined());
  CHECK(actual.dtype() == expected.dtype());
  REQUIRE_MESSAGE(actual.shape() == expected.shape(),
                  "shape " << shape_str(actual.shape()) << " vs " << shape_str(expected.shape()));
  const std::vector<double> a = actual.values_as_double();
  const std::vector<double> e = expected.values_as_double();
  const double scale = std::max(scale_floor, max_abs(expected));
  const Tolerance tol = tolerance(dtype);
  std::size_t bad = a.size();
  double worst = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double err = std::abs(a[i] - e[i]);
    const double allowed = tol.rtol * std::abs(e[i]) + tol.atol * scale;
    if (!(err <= allowed) && bad == a.size()) bad = i;
    worst = std::max(worst, err / (std::abs(e[i]) + scale * tol.atol / tol.rtol));
  }
  double& w = worst_rel[dtype == kFloat32 ? 0 : 1];
  w = std::max(w, worst);
  CHECK_MESSAGE(bad == a.size(), "element " << bad << ": " << (bad < a.size() ? a[bad] : 0.0) << " vs expected "
                                             << (bad < e.size() ? e[bad] : 0.0));
}

void check_exact(const Tensor& actual, const Tensor& expected, const std::string& what) {
  INFO(what);
  CHECK(actual.shape() == expected.shape());
  CHECK(actual.values_as_double() == expected.values_as_double());
}

// Loads case c's state into m, runs forward through an explicit parameter set (fresh leaves
// holding the module's values, as MAML's fast weights are), and checks the output, the
// gradients of (out * w).sum() and the buffers afterwards against PyTorch.
void check_layer(Module& m, DType dtype, const std::string& c) {
  const TensorDict& f = fixture(dtype);
  m.to(dtype);
  m.load_state_dict(f.with_prefix_removed(c + ".state."));
  TensorDict fast = m.named_parameters().map([](const Tensor& t) { return t.detach().clone().requires_grad_(); });
  Tensor x = leaf(f.at(c + ".x").clone());
  Tensor y = m.forward(Params(fast), x);
  check_close(y, f.at(c + ".out"), dtype, c + ".out");
  TensorList inputs = {x};
  for (const auto& [name, t] : fast) inputs.push_back(t);
  TensorList grads = grad({(y * f.at(c + ".w")).sum()}, inputs);
  check_close(grads[0], f.at(c + ".grad.x"), dtype, c + ".grad.x");
  std::size_t i = 1;
  for (const auto& [name, t] : fast) check_close(grads[i++], f.at(c + ".grad." + name), dtype, c + ".grad." + name);
  for (const auto& [name, t] : m.named_buffers()) {
    const Tensor& expected = f.at(c + ".after." + name);
    if (t.dtype() == kInt64)
      check_exact(t, expected, c + ".after." + name);
    else
      check_close(t, expected, dtype, c + ".after." + name);
  }
}

void check_functional(DType dtype, const std::string& c, const std::function<Tensor(const Tensor&)>& fn) {
  const TensorDict& f = fixture(dtype);
  Tensor x = leaf(f.at(c + ".x").clone());
  Tensor y = fn(x);
  check_close(y, f.at(c + ".out"), dtype, c + ".out");
  check_close(grad({(y * f.at(c + ".w")).sum()}, {x})[0], f.at(c + ".grad.x"), dtype, c + ".grad.x");
}

const char* dtype_label(DType dtype) { return dtype == kFloat32 ? "float32" : "float64"; }

// ---------------------------------------------------------------- gradcheck through layers

// f(x, params...) = module.forward(Params({names[i]: params[i]}), x): the layer run on an
// explicit parameter set, as in a MAML inner loop.
TensorFunction through(Module& m, std::vector<std::string> names) {
  return [&m, names](const TensorList& in) {
    TensorDict dict;
    for (std::size_t i = 0; i < names.size(); ++i) dict.insert(names[i], in[i + 1]);
    return m.forward(Params(dict), in[0]);
  };
}

// The module's parameters as float64 leaves, after x.
TensorList inputs_for(Module& m, const Tensor& x) {
  TensorList in = {leaf(x)};
  for (const auto& [name, t] : m.named_parameters()) in.push_back(leaf(t.to(kFloat64)));
  return in;
}

std::vector<std::string> param_names(const Module& m) { return m.named_parameters().keys(); }

void check_grads(Module& m, const Tensor& x, const std::string& label) {
  INFO(label);
  m.to(kFloat64);
  const TensorList in = inputs_for(m, x);
  const TensorFunction f = through(m, param_names(m));
  GradcheckResult first = gradcheck(f, in);
  CHECK_MESSAGE(first.ok, "gradcheck: " << first.message);
  GradcheckResult second = gradgradcheck(f, in);
  CHECK_MESSAGE(second.ok, "gradgradcheck: " << second.message);
}

// Non-trivial affine parameters and running statistics (eval mode must not divide by 1).
void randomise(BatchNorm2d& bn, uint64_t seed) {
  NoGradGuard no_grad;
  const DType dtype = bn.param("weight").defined() ? bn.param("weight").dtype() : kFloat64;
  if (Tensor w = bn.param("weight"); w.defined()) w.copy_(N(w.shape(), seed) * 0.3 + 1.0);
  if (Tensor b = bn.param("bias"); b.defined()) b.copy_(N(b.shape(), seed + 1) * 0.5);
  if (Tensor m = bn.buffer("running_mean"); m.defined()) m.copy_(N(m.shape(), seed + 2, dtype) * 0.3);
  if (Tensor v = bn.buffer("running_var"); v.defined()) {
    Generator gen(seed + 3);
    v.copy_(uniform(v.shape(), 0.5, 1.5, v.dtype(), kCPU, &gen));
  }
}

}  // namespace

TEST_SUITE("nn.conv") {
  // ---------------------------------------------------------------- unfold / fold
  TEST_CASE("unfold2d lays windows out as torch.nn.functional.unfold") {
    // x [1,1,3,3] = 0..8, kernel 2: four windows, one per column, rows are kernel offsets.
    Tensor x = arange(9.0, kFloat64).reshape({1, 1, 3, 3});
    Tensor cols = unfold2d(x, 2);
    CHECK(cols.shape() == Shape{1, 4, 4});
    CHECK(cols.values_as_double() == std::vector<double>{0, 1, 3, 4, 1, 2, 4, 5, 3, 4, 6, 7, 4, 5, 7, 8});
    // Padding reads zeros; stride 2 over the padded 5x5 gives 2x2 windows.
    Tensor padded = unfold2d(x, 2, 2, 1);
    CHECK(padded.shape() == Shape{1, 4, 4});
    CHECK(padded.values_as_double() == std::vector<double>{0, 0, 0, 4, 0, 0, 3, 5, 0, 1, 0, 7, 0, 2, 6, 8});
  }

  TEST_CASE("fold2d is the adjoint of unfold2d: <unfold(x), c> == <x, fold(c)>") {
    for (DType dtype : {kFloat32, kFloat64}) {
      Tensor x = N({2, 3, 7, 6}, 1, dtype);
      Tensor cols = unfold2d(x, {3, 2}, {2, 1}, {1, 1}, {1, 2});
      Tensor c = N(cols.shape(), 2, dtype);
      Tensor folded = fold2d(c, {7, 6}, {3, 2}, {2, 1}, {1, 1}, {1, 2});
      CHECK(folded.shape() == x.shape());
      const double lhs = (cols * c).sum().item<double>();
      const double rhs = (x * folded).sum().item<double>();
      CHECK(lhs == doctest::Approx(rhs).epsilon(dtype == kFloat32 ? 1e-5 : 1e-12));
    }
    // Folding ones counts how many windows cover each pixel.
    Tensor counts = fold2d(ones({1, 4, 4}, kFloat64), 3, 2);
    CHECK(counts.values_as_double() == std::vector<double>{1, 2, 1, 2, 4, 2, 1, 2, 1});
  }

  TEST_CASE("unfold2d and fold2d read non-contiguous inputs") {
    Tensor base = N({1, 2, 6, 5}, 3);
    Tensor x = base.transpose(2, 3);  // [1,2,5,6], strided
    CHECK_FALSE(x.is_contiguous());
    CHECK(unfold2d(x, 3, 1, 1).values_as_double() == unfold2d(x.contiguous(), 3, 1, 1).values_as_double());
    Tensor c = N({1, 9, 8}, 4).transpose(1, 2);  // [1,8,9], strided
    CHECK_FALSE(c.is_contiguous());
    CHECK(fold2d(c, 4, 2).values_as_double() == fold2d(c.contiguous(), 4, 2).values_as_double());
  }

  TEST_CASE("PyTorch fixtures: unfold and fold") {
    for (DType dtype : {kFloat32, kFloat64}) {
      INFO(dtype_label(dtype));
      check_functional(dtype, "unfold_k23_s21_p10", [](const Tensor& x) { return unfold2d(x, {2, 3}, {2, 1}, {1, 0}); });
      check_functional(dtype, "unfold_k3_d2_p2", [](const Tensor& x) { return unfold2d(x, 3, 1, 2, 2); });
      check_functional(dtype, "fold_k23_s21_p10",
                       [](const Tensor& c) { return fold2d(c, {5, 6}, {2, 3}, {2, 1}, {1, 0}); });
      check_functional(dtype, "fold_k2_s1", [](const Tensor& c) { return fold2d(c, 4, 2); });
    }
  }

  // ---------------------------------------------------------------- Conv2d
  TEST_CASE("Conv2d: PyTorch names, shapes and init bounds") {
    Generator gen(5);
    Conv2d conv(3, 64, 3, 1, 1, true, &gen);
    const TensorDict params = conv.named_parameters();
    CHECK(params.keys() == std::vector<std::string>{"weight", "bias"});
    CHECK(params.at("weight").shape() == Shape{64, 3, 3, 3});
    CHECK(params.at("bias").shape() == Shape{64});
    const double bound = 1.0 / std::sqrt(27.0);
    for (const char* name : {"weight", "bias"}) {
      Tensor t = params.at(name);
      const std::vector<double> v = t.values_as_double();
      CHECK(*std::max_element(v.begin(), v.end()) <= bound);
      CHECK(*std::min_element(v.begin(), v.end()) >= -bound);
      CHECK(*std::max_element(v.begin(), v.end()) > 0.5 * bound);  // spread over the interval
      CHECK(*std::min_element(v.begin(), v.end()) < -0.5 * bound);
    }
    // Same seed, same weights.
    Generator again(5);
    Conv2d twin(3, 64, 3, 1, 1, true, &again);
    CHECK(twin.param("weight").values_as_double() == conv.param("weight").values_as_double());
    Conv2d no_bias(2, 4, {2, 3}, 1, 0, false);
    CHECK(no_bias.named_parameters().keys() == std::vector<std::string>{"weight"});
    CHECK(no_bias.param("weight").shape() == Shape{4, 2, 2, 3});
  }

  TEST_CASE("PyTorch fixtures: Conv2d") {
    for (DType dtype : {kFloat32, kFloat64}) {
      INFO(dtype_label(dtype));
      Conv2d a(3, 4, 3, 1, 0);
      check_layer(a, dtype, "conv_s1_p0");
      Conv2d b(3, 4, 3, 2, 1);
      check_layer(b, dtype, "conv_s2_p1");
      Conv2d c(2, 3, 3, 2, 0);
      check_layer(c, dtype, "conv_s2_p0");
      Conv2d d(2, 3, {2, 3}, {1, 2}, {1, 0}, false);
      check_layer(d, dtype, "conv_k23_s12_p10_nobias");
    }
  }

  TEST_CASE("conv2d kernels: a few images' columns at a time give the whole batch's im2col + GEMM") {
    // Strided input, stride, padding and dilation; budgets of one image per group, of a few, and
    // the default (one group).
    const Tensor x = N({7, 3, 8, 9}, 20).transpose(2, 3);  // [7,3,9,8]
    const Tensor weight = N({4, 3, 3, 2}, 21);
    Window2d w;
    w.kh = 3, w.kw = 2, w.sh = 2, w.sw = 1, w.ph = 1, w.pw = 1, w.dh = 1, w.dw = 2;
    const int64_t oh = w.out_h(9), ow = w.out_w(8), rows = 3 * 3 * 2;
    const Tensor g = N({7, 4, oh, ow}, 22);
    // The one-group references, from the differentiable ops.
    const Tensor cols = unfold2d(x, {3, 2}, {2, 1}, 1, {1, 2});
    const Tensor w_mat = weight.reshape({4, rows});
    const Tensor g_mat = g.reshape({7, 4, oh * ow});
    const Tensor out = matmul(w_mat, cols).reshape({7, 4, oh, ow});
    const Tensor dx = fold2d(matmul(w_mat.t(), g_mat), {9, 8}, {3, 2}, {2, 1}, 1, {1, 2});
    const Tensor dweight = matmul(g_mat, cols.transpose(1, 2)).sum({0}).reshape(weight.shape());
    const int64_t image_bytes = rows * oh * ow * 8;
    for (int64_t budget : {int64_t{1}, 3 * image_bytes, kernels::kConvColumnBytes}) {
      INFO("column bytes " << budget);
      CHECK(max_abs(kernels::conv2d(x, weight, Tensor(), w, budget) - out) < 1e-12);
      // The bias, added a group at a time, per output channel.
      const Tensor bias = N({4}, 23);
      CHECK(max_abs(kernels::conv2d(x, weight, bias, w, budget) - (out + bias.reshape({4, 1, 1}))) < 1e-12);
      CHECK(max_abs(kernels::conv2d_input_grad(g, weight, 9, 8, w, budget) - dx) < 1e-12);
      CHECK(max_abs(kernels::conv2d_weight_grad(g, x, w, budget) - dweight) < 1e-12);
    }
  }

  TEST_CASE("conv2d kernels: a 3x3, stride-1, padding-1 window by Winograd F(2x2) or F(4x4) matches im2col + GEMM") {
    // Both tile sizes, even and odd sizes (edge tiles that hang past the image), small images
    // (3x3 in one F(4x4) tile, 2x3 in two F(2x2) ones, 2x2 in one), a strided input, a bias, budgets of one
    // image per group and the default.
    struct Case {
      int64_t n, c, o, h, w, tile;
    };
    const Case cases[] = {{3, 8, 9, 6, 6, 2},  {2, 16, 8, 7, 9, 2},  {1, 9, 12, 8, 5, 2},   {4, 12, 10, 14, 14, 2},
                          {3, 8, 9, 7, 7, 4},  {2, 10, 9, 8, 12, 4}, {1, 8, 16, 15, 11, 4}, {2, 9, 8, 28, 28, 4},
                          {5, 8, 10, 3, 3, 4}, {3, 9, 8, 2, 3, 2},   {2, 8, 8, 2, 2, 2}};
    Window2d w;
    w.kh = w.kw = 3, w.ph = w.pw = 1;
    uint64_t seed = 30;
    for (const Case& k : cases)
      for (DType dtype : {kFloat64, kFloat32}) {
        INFO("N", k.n, " C", k.c, " O", k.o, " ", k.h, "x", k.w, " ", dtype);
        REQUIRE(cpu::winograd_conv3x3_applies(Tensor::empty({k.n, k.c, k.h, k.w}, dtype, kCPU), k.o));
        REQUIRE(cpu::winograd_tile_size(k.h, k.w) == k.tile);
        const Tensor x = N({k.n, k.c, k.w, k.h}, seed++, dtype).transpose(2, 3);  // [n, c, h, w], strided
        const Tensor weight = N({k.o, k.c, 3, 3}, seed++, dtype), bias = N({k.o}, seed++, dtype);
        const Tensor g = N({k.n, k.o, k.h, k.w}, seed++, dtype);
        // References from the differentiable ops (unfold, matmul, fold), in float64.
        const Tensor x64 = x.to(kFloat64), w64 = weight.reshape({k.o, k.c * 9}).to(kFloat64);
        const Tensor g64 = g.to(kFloat64).reshape({k.n, k.o, k.h * k.w});
        const Tensor cols = unfold2d(x64, 3, 1, 1);
        const Tensor out = matmul(w64, cols).reshape({k.n, k.o, k.h, k.w}) + bias.to(kFloat64).reshape({k.o, 1, 1});
        const Tensor dx = fold2d(matmul(w64.t(), g64), {k.h, k.w}, 3, 1, 1);
        const Tensor dweight = matmul(g64, cols.transpose(1, 2)).sum({0}).reshape(weight.shape());
        // Winograd is exact in exact arithmetic: only rounding separates it from im2col (in
        // float32 about 5e-7 of the largest value for F(2x2), 2e-6 for F(4x4) on these cases).
        const double tol = dtype == kFloat64 ? 1e-12 : 2e-5;
        for (int64_t budget : {int64_t{1}, kernels::kConvColumnBytes}) {
          INFO("column bytes " << budget);
          const Tensor y = kernels::conv2d(x, weight, bias, w, budget);
          CHECK(y.dtype() == dtype);
          CHECK(max_abs(y.to(kFloat64) - out) <= tol * max_abs(out));
          const Tensor got_dx = kernels::conv2d_input_grad(g, weight, k.h, k.w, w, budget).to(kFloat64);
          CHECK(max_abs(got_dx - dx) <= tol * max_abs(dx));
          const Tensor got_dweight = kernels::conv2d_weight_grad(g, x, w, budget).to(kFloat64);
          CHECK(max_abs(got_dweight - dweight) <= tol * max_abs(dweight));
        }
      }
    // Below the thresholds im2col + GEMM runs: few channels (the first layer of conv4, one
    // channel), or images the tiles cover with more than 3/4 of the direct products (1x1: 16
    // against 9; one row of 9: 80 against 81). conv4's last layer (3x3 images) takes F(4x4),
    // a 2x2 image one F(2x2) tile.
    CHECK_FALSE(cpu::winograd_conv3x3_applies(Tensor::empty({2, 1, 28, 28}, kFloat32, kCPU), 64));
    CHECK_FALSE(cpu::winograd_conv3x3_applies(Tensor::empty({2, 64, 8, 8}, kFloat32, kCPU), 4));
    CHECK_FALSE(cpu::winograd_conv3x3_applies(Tensor::empty({2, 64, 1, 1}, kFloat32, kCPU), 64));
    CHECK_FALSE(cpu::winograd_conv3x3_applies(Tensor::empty({2, 64, 1, 9}, kFloat32, kCPU), 64));
    CHECK(cpu::winograd_conv3x3_applies(Tensor::empty({2, 64, 3, 3}, kFloat32, kCPU), 64));
    CHECK(cpu::winograd_tile_size(3, 3) == 4);
    CHECK(cpu::winograd_conv3x3_applies(Tensor::empty({2, 64, 2, 2}, kFloat32, kCPU), 64));
    CHECK(cpu::winograd_tile_size(2, 2) == 2);
  }

  TEST_CASE("conv2d kernels by Winograd: the same bits on one thread and on two") {
    // Groups of images run in parallel; the weight gradient sums them in blocks fixed by the batch
    // alone, so the thread count changes no rounding.
    Window2d w;
    w.kh = w.kw = 3, w.ph = w.pw = 1;
    const Tensor x = N({40, 16, 12, 12}, 50, kFloat32), weight = N({16, 16, 3, 3}, 51, kFloat32);
    const Tensor g = N({40, 16, 12, 12}, 52, kFloat32);
    const int64_t budget = 36 * 9 * 16 * 4 * 3;  // V of three images (9 tiles each) per group: 14 groups
    const int before = num_threads();
    std::vector<std::vector<double>> results[2];
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      results[threads - 1] = {kernels::conv2d(x, weight, Tensor(), w, budget).values_as_double(),
                              kernels::conv2d_input_grad(g, weight, 12, 12, w, budget).values_as_double(),
                              kernels::conv2d_weight_grad(g, x, w, budget).values_as_double()};
    }
    set_num_threads(before);
    CHECK(results[0][0] == results[1][0]);
    CHECK(results[0][1] == results[1][1]);
    CHECK(results[0][2] == results[1][2]);
  }

  TEST_CASE("Conv2d by Winograd F(2x2) and F(4x4): gradcheck and gradgradcheck") {
    Conv2d conv(8, 8, 3, 1, 1);
    REQUIRE(cpu::winograd_tile_size(6, 7) == 2);
    check_grads(conv, N({1, 8, 6, 7}, 40), "8 -> 8 channels, 6x7");
    REQUIRE(cpu::winograd_tile_size(8, 7) == 4);
    check_grads(conv, N({1, 8, 8, 7}, 41), "8 -> 8 channels, 8x7");
  }

  TEST_CASE("Conv2d: gradcheck and gradgradcheck through an explicit parameter set") {
    Conv2d a(2, 3, 3, 2, 1);
    check_grads(a, N({2, 2, 5, 5}, 10), "stride 2, padding 1");
    Conv2d b(2, 2, {2, 3}, 1, {1, 0}, false);
    check_grads(b, N({1, 2, 4, 5}, 11), "kernel (2,3), padding (1,0), no bias");
    Conv2d c(1, 2, 3, 1, 0);
    check_grads(c, N({3, 1, 4, 4}, 12), "N=3, C=1");
  }

  TEST_CASE("Conv2d: forward(x) uses the module's own parameters, forward(Params, x) the given ones") {
    Conv2d conv(2, 3, 3, 1, 1);
    conv.to(kFloat64);
    Tensor x = N({1, 2, 4, 4}, 13);
    TensorDict same = conv.named_parameters();
    CHECK(conv(x).values_as_double() == conv(Params(same), x).values_as_double());
    TensorDict doubled = same.map([](const Tensor& t) { return t * 2.0; });
    Tensor y2 = conv(Params(doubled), x);
    Tensor expected = conv2d(x, same.at("weight") * 2.0, same.at("bias") * 2.0, 1, 1);
    CHECK(y2.values_as_double() == expected.values_as_double());
    // A parameter set without the bias is an error for a layer with one.
    TensorDict missing{{"weight", same.at("weight")}};
    CHECK_ERROR(conv(Params(missing), x), "bias");
  }

  // ---------------------------------------------------------------- MaxPool2d
  TEST_CASE("PyTorch fixtures: MaxPool2d") {
    for (DType dtype : {kFloat32, kFloat64}) {
      INFO(dtype_label(dtype));
      MaxPool2d a(2);
      check_layer(a, dtype, "pool_k2");
      MaxPool2d b(3, 2, 1);
      check_layer(b, dtype, "pool_k3_s2_p1");
      MaxPool2d c({2, 3}, {1, 2}, {1, 1});
      check_layer(c, dtype, "pool_k23_s12_p11");
    }
  }

  TEST_CASE("MaxPool2d: padding never wins, the gradient goes to the first maximum") {
    // All negative: a zero-padded pool would return 0 at the border.
    Tensor x = (-1.0 - arange(16.0, kFloat64)).reshape({1, 1, 4, 4});
    Tensor y = max_pool2d(x, 2, 2, 1);
    CHECK(y.shape() == Shape{1, 1, 3, 3});
    CHECK(y.values_as_double() == std::vector<double>{-1, -2, -4, -5, -6, -8, -13, -14, -16});
    // Ties: the first maximal element in row-major order takes the whole gradient (PyTorch's rule).
    Tensor t = leaf(tensor({1.0, 3.0, 3.0, 2.0}, {1, 1, 2, 2}, kFloat64));
    Tensor g = grad({max_pool2d(t, 2).sum()}, {t})[0];
    CHECK(g.values_as_double() == std::vector<double>{0, 1, 0, 0});
    // Overlapping windows: an element that is the maximum of several windows collects them all.
    Tensor o = leaf(tensor({0.0, 0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0}, {1, 1, 3, 3}, kFloat64));
    CHECK(grad({max_pool2d(o, 2, 1).sum()}, {o})[0].values_as_double() ==
          std::vector<double>{0, 0, 0, 0, 4, 0, 0, 0, 0});
  }

  TEST_CASE("im2col against its definition, same-size windows (one shifted copy per row) and others") {
    auto window = [](Size2d k, Size2d s, Size2d p, Size2d d) {
      Window2d w;
      w.kh = k.h, w.kw = k.w, w.sh = s.h, w.sw = s.w, w.ph = p.h, w.pw = p.w, w.dh = d.h, w.dw = d.w;
      return w;
    };
    // The first five keep the input's size; the last two do not.
    const std::vector<Window2d> windows = {
        window(3, 1, 1, 1), window(5, 1, 2, 1), window(3, 1, 2, 2), window({3, 1}, 1, {1, 0}, 1),
        window(1, 1, 0, 1), window(3, 1, 0, 1), window(3, 2, 1, 1)};
    for (const Window2d& w : windows) {
      for (double pad : {0.0, -std::numeric_limits<double>::infinity()}) {
        INFO("k", w.kh, "x", w.kw, " s", w.sh, " p", w.ph, "x", w.pw, " d", w.dh, " pad ", pad);
        const Tensor x = N({2, 3, 6, 5}, 95);
        const int64_t H = 6, W = 5, oh = w.out_h(H), ow = w.out_w(W);
        const std::vector<double> got = kernels::im2col(x, w, pad).values_as_double();
        const std::vector<double> xv = x.values_as_double();
        std::vector<double> want;
        for (int64_t n = 0; n < 2; ++n)
          for (int64_t c = 0; c < 3; ++c)
            for (int64_t i = 0; i < w.kh; ++i)
              for (int64_t j = 0; j < w.kw; ++j)
                for (int64_t oy = 0; oy < oh; ++oy)
                  for (int64_t ox = 0; ox < ow; ++ox) {
                    const int64_t y = oy * w.sh - w.ph + i * w.dh, xx = ox * w.sw - w.pw + j * w.dw;
                    const bool inside = y >= 0 && y < H && xx >= 0 && xx < W;
                    want.push_back(inside ? xv[((n * 3 + c) * H + y) * W + xx] : pad);
                  }
        CHECK(got == want);
      }
    }
  }

  TEST_CASE("relu and 2x2 max-pooling commute: the same values and gradients in either order (Conv4's blocks)") {
    // Windows all negative, with zeros, with ties, and ordinary ones.
    Tensor x = N({2, 3, 6, 6}, 40);
    std::vector<double> v = x.to_vector();
    for (std::size_t i = 0; i < v.size(); i += 7) v[i] = 0.0;
    for (std::size_t i = 0; i + 1 < v.size(); i += 11) v[i + 1] = v[i];
    for (std::size_t i = 0; i < 4; ++i) v[i * 6] = v[i * 6 + 1] = -1.0 - static_cast<double>(i);
    x = tensor(v, x.shape(), kFloat64).requires_grad_();
    const Tensor w = N({2, 3, 3, 3}, 41).requires_grad_();
    const Tensor pool_then_relu = relu(max_pool2d(x, 2)), relu_then_pool = max_pool2d(relu(x), 2);
    CHECK(pool_then_relu.to_vector() == relu_then_pool.to_vector());
    const Tensor g1 = grad({(pool_then_relu * w).sum()}, {x}, {}, {.create_graph = true})[0];
    const Tensor g2 = grad({(relu_then_pool * w).sum()}, {x}, {}, {.create_graph = true})[0];
    CHECK(g1.to_vector() == g2.to_vector());
    const Tensor v2 = N({2, 3, 6, 6}, 42);
    CHECK(grad({(g1 * v2).sum()}, {w})[0].to_vector() == grad({(g2 * v2).sum()}, {w})[0].to_vector());
  }

  TEST_CASE("max_pool2d: the direct kernel against max over the unfolded windows") {
    // Reference: im2col with -inf padding, then the first maximum of each window (arg_reduce's
    // rule, NaN first). Values drawn from a few levels so that windows hold ties, with NaN and
    // infinities sprinkled in.
    struct Case {
      Shape x;
      Window2d w;
    };
    auto window = [](int64_t k, int64_t s, int64_t p, int64_t d) {
      Window2d w;
      w.kh = w.kw = k, w.sh = w.sw = s, w.ph = w.pw = p, w.dh = w.dw = d;
      return w;
    };
    Window2d uneven = window(3, 1, 1, 1);
    uneven.kw = 2, uneven.sw = 2, uneven.pw = 0;
    // 2x2 stride 2 in float32 takes the AVX2 loop where there is one: 8 outputs a row at a time
    // (widths 32 and 28 end in a whole and a partial block, 10, 7 and 3 are all tail; odd widths
    // and heights leave the last column and row out), in float64 the general one.
    for (const Case& c :
         {Case{{2, 3, 8, 10}, window(2, 2, 0, 1)}, Case{{1, 2, 9, 32}, window(2, 2, 0, 1)},
          Case{{2, 3, 6, 28}, window(2, 2, 0, 1)}, Case{{1, 2, 4, 35}, window(2, 2, 0, 1)},
          Case{{3, 2, 3, 3}, window(2, 2, 0, 1)}, Case{{1, 2, 7, 7}, window(2, 2, 0, 1)},
          Case{{2, 2, 9, 8}, window(3, 2, 1, 1)}, Case{{1, 3, 6, 7}, uneven}, Case{{1, 2, 7, 7}, window(2, 1, 0, 2)}}) {
      for (DType dtype : {kFloat32, kFloat64}) {
        INFO(shape_str(c.x), " k", c.w.kh, "x", c.w.kw, " s", c.w.sh, " p", c.w.ph, " ",
             std::string(dtype_label(dtype)));
        std::vector<double> v = (N(c.x, 90) * 2.0).values_as_double();
        for (double& e : v) e = std::floor(e);
        for (std::size_t i = 0; i < v.size(); i += 7) v[i] = std::nan("");
        for (std::size_t i = 3; i < v.size(); i += 11) v[i] = (i % 2 ? 1.0 : -1.0) * INFINITY;
        const Tensor x = tensor(v, c.x, dtype);
        const int64_t n = c.x[0], ch = c.x[1], oh = c.w.out_h(c.x[2]), ow = c.w.out_w(c.x[3]);
        const Tensor cols = kernels::im2col(x, c.w, -INFINITY).reshape({n, ch, c.w.kh * c.w.kw, oh * ow});
        const auto [want_values, want_window] = kernels::arg_reduce(ReduceOp::Max, cols, 2, false);
        const auto [values, indices] = kernels::max_pool2d(x, c.w);
        const std::vector<double> got = values.values_as_double(), want = want_values.values_as_double();
        REQUIRE(got.size() == want.size());
        for (std::size_t e = 0; e < got.size(); ++e)
          if (!(got[e] == want[e] || (std::isnan(got[e]) && std::isnan(want[e])))) FAIL_CHECK("value ", e);
        // Window slot k = i * kw + j read plane position (oy*sh - ph + i*dh) * W + ox*sw - pw + j*dw.
        std::vector<double> want_positions;
        const std::vector<double> slots = want_window.values_as_double();
        for (std::size_t e = 0; e < slots.size(); ++e) {
          const int64_t k = static_cast<int64_t>(slots[e]), o = static_cast<int64_t>(e) % (oh * ow);
          const int64_t y = o / ow * c.w.sh - c.w.ph + k / c.w.kw * c.w.dh;
          const int64_t xx = o % ow * c.w.sw - c.w.pw + k % c.w.kw * c.w.dw;
          want_positions.push_back(static_cast<double>(y * c.x[3] + xx));
        }
        CHECK(indices.values_as_double() == want_positions);
      }
    }
  }

  TEST_CASE("max_pool2d_with_indices and max_unpool2d") {
    const Tensor x = tensor({1.0, 5.0, 2.0, 0.0, 3.0, 4.0, 7.0, 6.0}, {1, 1, 2, 4}, kFloat64);
    const auto [y, at] = max_pool2d_with_indices(x, 2, 2);
    CHECK(y.values_as_double() == std::vector<double>{5, 7});
    CHECK(at.values_as_double() == std::vector<double>{1, 6});
    CHECK(at.dtype() == kInt64);
    CHECK(max_unpool2d(y, at, {2, 4}).values_as_double() == std::vector<double>{0, 5, 0, 0, 0, 0, 7, 0});
    // Repeated positions sum.
    const Tensor twice = tensor(std::vector<int64_t>{3, 3}, {1, 1, 1, 2});
    CHECK(max_unpool2d(y, twice, {2, 2}).values_as_double() == std::vector<double>{0, 0, 0, 12});
    CHECK_ERROR(max_unpool2d(y, tensor(std::vector<int64_t>{0, 8}, {1, 1, 1, 2}), {2, 4}), "max_unpool2d", "index 8",
                "2x4");
    CHECK_ERROR(max_unpool2d(y, tensor(std::vector<int64_t>{0, -1}, {1, 1, 1, 2}), {2, 4}), "max_unpool2d", "index -1");
    CHECK_ERROR(max_unpool2d(y, at.to(kFloat64), {2, 4}), "max_unpool2d", "int64");
    CHECK_ERROR(max_unpool2d(y, tensor(std::vector<int64_t>{0}, {1, 1, 1, 1}), {2, 4}), "max_unpool2d", "[1,1,1,2]");
    CHECK_ERROR(max_unpool2d(y.reshape({2}), at.reshape({2}), {2, 4}), "max_unpool2d", "4-D");
    CHECK_ERROR(max_unpool2d(y, at, {0, 4}), "max_unpool2d", "output size must be positive");
  }

  // max_unpool2d against a scatter written here, on odd sizes (the last row and column receive
  // nothing), with windows that overlap (positions taken twice sum, rounded in the dtype) and
  // windows that do not.
  TEST_CASE("max_unpool2d against a plain scatter") {
    auto scatter = [](const Tensor& grad, const Tensor& at, int64_t h, int64_t w) {
      const std::vector<double> g = grad.values_as_double(), idx = at.values_as_double();
      const int64_t planes = grad.size(0) * grad.size(1), positions = grad.size(2) * grad.size(3);
      std::vector<double> out(static_cast<size_t>(planes * h * w), 0.0);
      for (int64_t p = 0; p < planes; ++p)
        for (int64_t i = 0; i < positions; ++i) {
          double& o =
              out[static_cast<size_t>(p * h * w + static_cast<int64_t>(idx[static_cast<size_t>(p * positions + i)]))];
          o += g[static_cast<size_t>(p * positions + i)];
          if (grad.dtype() == kFloat32) o = static_cast<float>(o);  // a float32 sum rounds each add
        }
      return out;
    };
    struct Case {
      Shape x;
      int64_t kernel, stride, padding;
    };
    for (const DType dtype : {kFloat32, kFloat64})
      for (const Case& c : {Case{{2, 3, 7, 7}, 2, 2, 0}, Case{{1, 2, 6, 9}, 2, 2, 0}, Case{{2, 2, 7, 7}, 3, 2, 1},
                            Case{{2, 2, 7, 7}, 3, 2, 0}, Case{{1, 3, 8, 8}, 2, 1, 0}}) {
        CAPTURE(shape_str(c.x));
        CAPTURE(c.kernel);
        const Tensor x = N(c.x, 30, dtype);
        const auto [y, at] = max_pool2d_with_indices(x, c.kernel, c.stride, c.padding);
        const Tensor g = N(y.shape(), 31, dtype);
        const Tensor got = max_unpool2d(g, at, {c.x[2], c.x[3]});
        CHECK(got.values_as_double() == scatter(g, at, c.x[2], c.x[3]));
      }
    // Positions in and out of their outputs' 2x2 blocks, one taken twice.
    const Tensor g = tensor({1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0}, {1, 2, 2, 2}, kFloat32);
    const Tensor at = tensor(std::vector<int64_t>{1, 6, 9, 15, 0, 0, 10, 5}, {1, 2, 2, 2});
    CHECK(max_unpool2d(g, at, {4, 4}).values_as_double() == scatter(g, at, 4, 4));
  }

  TEST_CASE("MaxPool2d: gradcheck and gradgradcheck") {
    MaxPool2d a(2);
    check_grads(a, N({2, 3, 4, 4}, 20), "kernel 2");
    MaxPool2d b(3, 2, 1);
    check_grads(b, N({1, 2, 5, 5}, 21), "kernel 3, stride 2, padding 1");
    MaxPool2d c({2, 3}, {1, 2}, {1, 1});
    check_grads(c, N({2, 1, 4, 5}, 22), "kernel (2,3), stride (1,2), padding (1,1)");
  }

  // ---------------------------------------------------------------- BatchNorm2d
  TEST_CASE("BatchNorm2d: modes, names and buffers") {
    CHECK(to_string(BatchNormMode::RunningStats) == "running_stats");
    CHECK(to_string(BatchNormMode::Transductive) == "transductive");
    CHECK(to_string(BatchNormMode::PerStep) == "per_step");

    BatchNorm2d standard(4);
    CHECK(standard.mode() == BatchNormMode::RunningStats);
    CHECK(standard.state_dict().keys() ==
          std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"});
    CHECK(standard.buffer("num_batches_tracked").dtype() == kInt64);
    CHECK(standard.buffer("num_batches_tracked").dim() == 0);

    BatchNorm2d transductive(4, 1e-5, 0.1, true, BatchNormMode::Transductive);
    CHECK(transductive.state_dict().keys() == std::vector<std::string>{"weight", "bias"});

    BatchNorm2d per_step(4, BatchNorm2dOptions{.mode = BatchNormMode::PerStep, .num_steps = 5});
    CHECK(per_step.buffer("running_mean").shape() == Shape{5, 4});
    CHECK(per_step.buffer("running_var").shape() == Shape{5, 4});
    CHECK(per_step.buffer("num_batches_tracked").shape() == Shape{5});

    BatchNorm2d plain(4, 1e-5, 0.1, false);
    CHECK(plain.named_parameters().empty());
  }

  TEST_CASE("PyTorch fixtures: BatchNorm2d in every mode, train and eval") {
    for (DType dtype : {kFloat32, kFloat64}) {
      INFO(dtype_label(dtype));
      BatchNorm2d train(3);
      check_layer(train, dtype, "bn_train");
      BatchNorm2d eval(3);
      eval.eval();
      check_layer(eval, dtype, "bn_eval");
      BatchNorm2d cumulative(3, 1e-5, std::nullopt);
      check_layer(cumulative, dtype, "bn_train_cumulative");
      BatchNorm2d no_affine(3, 1e-3, 0.3, false);
      check_layer(no_affine, dtype, "bn_train_noaffine");
      BatchNorm2d transductive(3, 1e-5, 0.1, true, BatchNormMode::Transductive);
      transductive.eval();
      check_layer(transductive, dtype, "bn_transductive_eval");
      BatchNorm2dOptions per_step{.mode = BatchNormMode::PerStep, .num_steps = 3};
      BatchNorm2d per_step_train(3, per_step);
      per_step_train.set_inner_step(1);
      check_layer(per_step_train, dtype, "bn_perstep_train");
      BatchNorm2d per_step_eval(3, per_step);
      per_step_eval.set_inner_step(1);
      per_step_eval.eval();
      check_layer(per_step_eval, dtype, "bn_perstep_eval");
    }
  }

  TEST_CASE("BatchNorm2d: running statistics, mode by mode") {
    Tensor x = N({4, 2, 3, 3}, 30) * 2.0 + 1.0;
    const Tensor batch_mean = mean(x, {0, 2, 3});
    const Tensor batch_var_unbiased = var(x, {0, 2, 3});
    const Tensor batch_var = var(x, {0, 2, 3}, 0);

    SUBCASE("RunningStats: train updates (unbiased variance), eval uses them and changes nothing") {
      BatchNorm2d bn(2, 1e-5, 0.25);
      bn.to(kFloat64);
      bn(x);
      const Tensor rm = batch_mean * 0.25;
      const Tensor rv = batch_var_unbiased * 0.25 + 0.75;
      // The fused kernel merges per-image sums, so the last bits differ from mean()'s.
      for (int c = 0; c < 2; ++c) {
        CHECK(bn.buffer("running_mean").values_as_double()[c] ==
              doctest::Approx(rm.values_as_double()[c]).epsilon(1e-14));
        CHECK(bn.buffer("running_var").values_as_double()[c] == doctest::Approx(rv.values_as_double()[c]).epsilon(1e-14));
      }
      const std::vector<double> rm_after_train = bn.buffer("running_mean").values_as_double();
      CHECK(bn.buffer("num_batches_tracked").item<int64_t>() == 1);
      bn.eval();
      Tensor y = bn(x);
      Tensor expected = (x - rm.reshape({2, 1, 1})) / sqrt(bn.buffer("running_var").reshape({2, 1, 1}) + 1e-5);
      CHECK(max(abs(y - expected).flatten(), 0).first.item<double>() < 1e-12);
      CHECK(bn.buffer("num_batches_tracked").item<int64_t>() == 1);
      CHECK(bn.buffer("running_mean").values_as_double() == rm_after_train);
      // Training normalises with the biased batch variance.
      bn.train();
      Tensor yt = bn(x);
      Tensor expected_t = (x - batch_mean.reshape({2, 1, 1})) / sqrt(batch_var.reshape({2, 1, 1}) + 1e-5);
      CHECK(max(abs(yt - expected_t).flatten(), 0).first.item<double>() < 1e-12);
    }

    SUBCASE("Transductive: batch statistics in eval too, nothing stored") {
      BatchNorm2d bn(2, 1e-5, 0.1, true, BatchNormMode::Transductive);
      bn.to(kFloat64);
      Tensor train_out = bn(x);
      bn.eval();
      Tensor eval_out = bn(x);
      CHECK(train_out.values_as_double() == eval_out.values_as_double());
      CHECK(bn.named_buffers().empty());
      // Each batch is normalised by its own statistics: a shifted batch gives the same output.
      CHECK(max(abs(bn(x + 3.0) - eval_out).flatten(), 0).first.item<double>() < 1e-12);
    }

    SUBCASE("PerStep: the inner step picks the row that is updated and used") {
      BatchNorm2d bn(2, 1e-5, 0.5, true, BatchNormMode::PerStep, 3);
      bn.to(kFloat64);
      CHECK(bn.inner_step() == 0);
      bn.set_inner_step(2);
      bn(x);
      const std::vector<double> rm = bn.buffer("running_mean").values_as_double();
      const std::vector<double> expected_row = (batch_mean * 0.5).values_as_double();
      CHECK(std::vector<double>(rm.begin(), rm.begin() + 4) == std::vector<double>{0, 0, 0, 0});
      CHECK(rm[4] == doctest::Approx(expected_row[0]).epsilon(1e-14));
      CHECK(rm[5] == doctest::Approx(expected_row[1]).epsilon(1e-14));
      CHECK(bn.buffer("num_batches_tracked").values_as_double() == std::vector<double>{0, 0, 1});
      const std::vector<double> rv = bn.buffer("running_var").values_as_double();
      CHECK(rv[0] == 1.0);
      CHECK(rv[3] == 1.0);
      CHECK(rv[4] != 1.0);
      bn.eval();
      Tensor y2 = bn(x);
      bn.set_inner_step(0);
      Tensor y0 = bn(x);
      // Row 0 still holds (0, 1): eval at step 0 is (x - 0) / sqrt(1 + eps).
      CHECK(max(abs(y0 - x / std::sqrt(1.0 + 1e-5)).flatten(), 0).first.item<double>() < 1e-12);
      CHECK(max(abs(y2 - y0).flatten(), 0).first.item<double>() > 0.1);
      CHECK_ERROR(bn.set_inner_step(3), "inner step 3", "3 steps");
      CHECK_ERROR(bn.set_inner_step(-1), "inner step -1");
      // Modes without per-step statistics ignore the step: the module is not even written, so
      // tasks on several threads may all call it.
      BatchNorm2d standard(2);
      standard.set_inner_step(7);
      CHECK(standard.inner_step() == 0);
    }

    SUBCASE("momentum nullopt: a cumulative average") {
      BatchNorm2d bn(2, 1e-5, std::nullopt);
      bn.to(kFloat64);
      Tensor x2 = N({4, 2, 3, 3}, 31);
      bn(x);
      bn(x2);
      const Tensor expected = (batch_mean + mean(x2, {0, 2, 3})) / 2.0;
      const std::vector<double> rm = bn.buffer("running_mean").values_as_double();
      for (int c = 0; c < 2; ++c) CHECK(rm[c] == doctest::Approx(expected.values_as_double()[c]).epsilon(1e-14));
    }

    SUBCASE("running-stat updates are detached: no tape runs through them") {
      BatchNorm2d bn(2);
      bn.to(kFloat64);
      Tensor xl = leaf(x);
      Tensor y = bn(xl);
      CHECK(y.requires_grad());
      CHECK_FALSE(bn.buffer("running_mean").requires_grad());
      CHECK_FALSE(bn.buffer("running_var").requires_grad());
    }
  }

  TEST_CASE("BatchNorm2d: gradcheck and gradgradcheck in every mode, train and eval") {
    const Tensor x = N({3, 2, 2, 3}, 40);
    for (BatchNormMode mode : {BatchNormMode::RunningStats, BatchNormMode::Transductive, BatchNormMode::PerStep}) {
      for (bool training : {true, false}) {
        BatchNorm2d bn(2, 1e-5, 0.1, true, mode, mode == BatchNormMode::PerStep ? 3 : 1);
        bn.to(kFloat64);
        randomise(bn, 41);
        if (mode == BatchNormMode::PerStep) bn.set_inner_step(1);
        bn.train(training);
        check_grads(bn, x, std::string(to_string(mode)) + (training ? " train" : " eval"));
      }
    }
    BatchNorm2d no_affine(2, 1e-3, 0.1, false);
    check_grads(no_affine, x, "no affine, train");
  }

  TEST_CASE("batch_norm: the fused kernels against the formula in float64 ops") {
    // Reference: the normalisation and its gradients written out in float64 ops on x's values.
    auto reference = [](const Tensor& x64, const Tensor& w64, const Tensor& b64, const Tensor& g64) {
      const bool per_task = x64.dim() == 5;
      const std::vector<int64_t> dims = per_task ? std::vector<int64_t>{1, 3, 4} : std::vector<int64_t>{0, 2, 3};
      auto channel = [&](const Tensor& t) {
        return per_task ? t.reshape({t.size(0), 1, t.size(1), 1, 1}) : t.reshape({t.size(0), 1, 1});
      };
      Tensor x = leaf(x64), w = leaf(w64), b = leaf(b64);
      const Tensor centered = x - mean(x, dims, true);
      const Tensor y = centered * rsqrt(mean(centered * centered, dims, true) + 1e-5) * channel(w) + channel(b);
      TensorList grads = grad({sum(y * g64)}, {x, w, b});
      grads.insert(grads.begin(), y.detach());
      return grads;
    };
    struct Case {
      Shape x, channel;
    };
    // S = 35 (vector lanes and a tail), S = 1600 (several 16-lane blocks per slice), task-batched.
    for (const Case& c : {Case{{3, 4, 5, 7}, {4}}, Case{{2, 3, 40, 40}, {3}}, Case{{2, 3, 4, 6, 6}, {2, 4}}}) {
      for (DType dtype : {kFloat32, kFloat64}) {
        INFO(shape_str(c.x), " ", dtype_label(dtype));
        // An offset of 100 against a spread of 3: E[x^2] - mean^2 would lose float32's digits.
        const Tensor x = (N(c.x, 80) * 3.0 + 100.0).to(dtype);
        const Tensor w = N(c.channel, 81).to(dtype), b = N(c.channel, 82).to(dtype), g = N(c.x, 83).to(dtype);
        const TensorList want = reference(x.to(kFloat64), w.to(kFloat64), b.to(kFloat64), g.to(kFloat64));
        Tensor xl = leaf(x), wl = leaf(w), bl = leaf(b);
        BatchNormStats stats;
        const Tensor y = batch_norm(xl, wl, bl, 1e-5, &stats);
        const TensorList got = grad({sum(y * g)}, {xl, wl, bl});
        const double tol = dtype == kFloat64 ? 1e-11 : 2e-4;
        auto largest = [](const Tensor& t) { return max(abs(t).flatten(), 0).first.item<double>(); };
        // Worst error relative to the reference's largest magnitude (at least 1).
        auto worst = [&](const Tensor& a, const Tensor& e) {
          return largest(a.to(kFloat64) - e) / std::max(1.0, largest(e));
        };
        CHECK(worst(y, want[0]) < tol);
        CHECK(worst(got[0], want[1]) < tol);
        CHECK(worst(got[1], want[2]) < tol);
        CHECK(worst(got[2], want[3]) < tol);
        const std::vector<int64_t> dims =
            c.x.size() == 5 ? std::vector<int64_t>{1, 3, 4} : std::vector<int64_t>{0, 2, 3};
        const Tensor x64 = x.to(kFloat64);
        CHECK(worst(stats.mean, mean(x64, dims).reshape(c.channel)) < tol * 100.0);
        CHECK(worst(stats.var, var(x64, dims, 0).reshape(c.channel)) < tol);
        CHECK_FALSE(stats.mean.requires_grad());
      }
    }
  }

  TEST_CASE("batch_norm: bad input") {
    CHECK_ERROR(batch_norm(N({2, 3, 4}, 1)), "batch_norm", "4-D", "[2,3,4]");
    CHECK_ERROR(batch_norm(N({2, 3, 2, 2}, 1), N({2}, 2)), "batch_norm", "weight", "[2]", "[3]");
    CHECK_ERROR(batch_norm(N({2, 3, 2, 2}, 1), Tensor(), N({3}, 2, kFloat32)), "batch_norm", "float");
    CHECK_ERROR(batch_norm(N({2, 2, 3, 2, 2}, 1), N({3}, 2)), "batch_norm", "weight", "[2,3]");
    CHECK_ERROR(batch_norm(zeros({2, 3, 2, 2}, kInt64)), "batch_norm", "int64");
    CHECK_ERROR(batch_norm(N({2, 3, 2, 2}, 1), Tensor(), Tensor(), -1.0), "batch_norm", "eps");
    CHECK_ERROR(batch_norm(N({0, 3, 2, 2}, 1)), "batch_norm", "at least one value per channel");
  }

  // ---------------------------------------------------------------- a conv4 block
  TEST_CASE("PyTorch fixtures: conv -> batch norm -> relu -> max pool, first and second order") {
    for (DType dtype : {kFloat32, kFloat64}) {
      INFO(dtype_label(dtype));
      const TensorDict& f = fixture(dtype);
      Conv2d conv(3, 4, 3, 1, 1);
      BatchNorm2d bn(4);
      MaxPool2d pool(2);
      conv.to(dtype);
      bn.to(dtype);
      conv.load_state_dict(f.with_prefix_removed("block.state.conv."));
      bn.load_state_dict(f.with_prefix_removed("block.state.bn."));
      const std::vector<std::string> names = {"conv.weight", "conv.bias", "bn.weight", "bn.bias"};
      TensorDict fast;
      for (const std::string& name : names) fast.insert(name, leaf(f.at("block.state." + name).clone()));
      Tensor x = leaf(f.at("block.x").clone());
      Tensor y = pool(relu(bn(Params(fast, "bn."), conv(Params(fast, "conv."), x))));
      check_close(y, f.at("block.out"), dtype, "block.out");
      TensorList inputs = {x};
      for (const std::string& name : names) inputs.push_back(fast.at(name));
      TensorList grads = grad({(y * f.at("block.w")).sum()}, inputs, {}, {.create_graph = true});
      check_close(grads[0], f.at("block.grad.x"), dtype, "block.grad.x");
      // The conv bias feeds a train-mode batch norm, which subtracts it again: its gradients are
      // exactly zero, so both sides hold rounding noise, compared at the conv weight's scale.
      auto floor_for = [&](const std::string& kind, const std::string& name) {
        return name == "conv.bias" ? max_abs(f.at("block." + kind + ".conv.weight")) : 0.0;
      };
      Tensor penalty;
      for (std::size_t i = 0; i < names.size(); ++i) {
        const std::string key = "block.grad." + names[i];
        check_close(grads[i + 1], f.at(key), dtype, key, floor_for("grad", names[i]));
        Tensor term = (grads[i + 1] * grads[i + 1]).sum();
        penalty = penalty.defined() ? penalty + term : term;
      }
      // bn.bias reaches the penalty only through relu's mask, whose derivative is zero: it may be
      // unused on our tape where PyTorch reports zeros.
      TensorList second = grad({penalty}, inputs, {}, {.allow_unused = true});
      check_close(second[0], f.at("block.gradgrad.x"), dtype, "block.gradgrad.x");
      for (std::size_t i = 0; i < names.size(); ++i) {
        const std::string key = "block.gradgrad." + names[i];
        const Tensor expected = f.at(key);
        check_close(second[i + 1].defined() ? second[i + 1] : zeros_like(expected), expected, dtype, key,
                    floor_for("gradgrad", names[i]));
      }
    }
    MESSAGE("worst error against PyTorch, relative to |expected| + floor: float32 " << worst_rel[0] << ", float64 "
                                                                                     << worst_rel[1]);
  }

  TEST_CASE("conv4 on 28x28: shapes, and gradgradcheck through a tiny conv block on an explicit parameter set") {
    // The MAML Omniglot backbone: 4 x [conv3x3 64, BN, ReLU, maxpool 2]: 28 -> 14 -> 7 -> 3 -> 1.
    std::vector<std::unique_ptr<Conv2d>> convs;
    std::vector<std::unique_ptr<BatchNorm2d>> norms;
    MaxPool2d pool(2);
    Generator gen(50);
    for (int i = 0; i < 4; ++i) {
      convs.push_back(std::make_unique<Conv2d>(i == 0 ? 1 : 64, 64, 3, 1, 1, true, &gen));
      norms.push_back(std::make_unique<BatchNorm2d>(64, 1e-5, 0.1, true, BatchNormMode::Transductive));
    }
    Tensor h = randn({2, 1, 28, 28}, kFloat32, kCPU, &gen);
    const std::vector<int64_t> sizes = {14, 7, 3, 1};
    for (int i = 0; i < 4; ++i) {
      h = pool(relu((*norms[i])((*convs[i])(h))));
      CHECK(h.shape() == Shape{2, 64, sizes[i], sizes[i]});
    }

    // The same structure at toy size, float64, differentiated twice with respect to the input
    // and every parameter.
    Conv2d conv(1, 2, 3, 1, 1);
    BatchNorm2d bn(2, 1e-5, 0.1, true, BatchNormMode::Transductive);
    conv.to(kFloat64);
    bn.to(kFloat64);
    TensorList in = {leaf(N({2, 1, 4, 4}, 51))};
    for (const Tensor& t : conv.parameters()) in.push_back(leaf(t));
    for (const Tensor& t : bn.parameters()) in.push_back(leaf(t));
    TensorFunction f = [&](const TensorList& v) {
      TensorDict c{{"weight", v[1]}, {"bias", v[2]}};
      TensorDict b{{"weight", v[3]}, {"bias", v[4]}};
      return pool(relu(bn(Params(b), conv(Params(c), v[0]))));
    };
    GradcheckResult first = gradcheck(f, in);
    CHECK_MESSAGE(first.ok, first.message);
    GradcheckResult second = gradgradcheck(f, in);
    CHECK_MESSAGE(second.ok, second.message);
  }

  // ---------------------------------------------------------------- errors
  TEST_CASE("errors name the op, the shapes and what is wrong") {
    Tensor x = N({1, 3, 5, 5}, 60);
    Conv2d conv(2, 4, 3);
    conv.to(kFloat64);
    CHECK_ERROR(conv(x), "conv2d", "[1,3,5,5]", "3 channels", "[4,2,3,3]", "expects 2");
    CHECK_ERROR(conv(N({2, 5, 5}, 61)), "conv2d", "4-D", "[2,5,5]");
    CHECK_ERROR(conv(N({1, 2, 2, 2}, 62)), "conv2d", "kernel spans 3x3", "padded input is only 2x2", "[1,2,2,2]");
    CHECK_ERROR(conv(N({1, 2, 5, 5}, 63, kFloat32)), "conv2d", "float32", "float64");
    CHECK_ERROR(conv2d(x, N({4, 3, 3}, 64)), "conv2d", "weight must be 4-D", "[4,3,3]");
    CHECK_ERROR(conv2d(x, N({4, 3, 3, 3}, 65), N({3}, 66)), "conv2d", "bias must be 1-D [4]", "[3]");
    CHECK_ERROR(conv2d(x, N({4, 3, 3, 3}, 65), Tensor(), 0), "conv2d", "stride (0,0)");
    CHECK_ERROR(Conv2d(0, 4, 3), "Conv2d", "channel counts");
    // The adjoints check their operands against the convolution they come from.
    const Tensor w433 = N({4, 3, 3, 3}, 65);
    CHECK_ERROR(conv2d_input_grad(N({1, 4, 5, 5}, 71), w433, 4, 1, 1), "conv2d_input_grad", "[1,4,5,5]", "4x4 input",
                "4x4)");
    CHECK_ERROR(conv2d_input_grad(N({1, 2, 5, 5}, 71), w433, 5, 1, 1), "conv2d_input_grad", "[1,2,5,5]",
                "4 channels of 5x5");
    CHECK_ERROR(conv2d_input_grad(N({1, 4, 5, 5}, 71), w433, {0, 5}), "conv2d_input_grad", "input size (0,5)");
    CHECK_ERROR(conv2d_input_grad(N({4, 5, 5}, 71), w433, 5), "conv2d_input_grad", "4-D", "[4,5,5]");
    CHECK_ERROR(conv2d_input_grad(N({1, 4, 5, 5}, 71, kFloat32), w433, 5, 1, 1), "conv2d_input_grad", "float32",
                "same dtype");
    CHECK_ERROR(conv2d_weight_grad(N({2, 4, 5, 5}, 72), x, 3, 1, 1), "conv2d_weight_grad", "[2,4,5,5]", "[1,3,5,5]",
                "as many images");
    CHECK_ERROR(conv2d_weight_grad(N({1, 4, 4, 4}, 72), x, 3, 1, 1), "conv2d_weight_grad", "each 5x5");
    CHECK_ERROR(conv2d_weight_grad(N({1, 4, 5, 5}, 72), x, {3, 0}, 1, 1), "conv2d_weight_grad", "kernel (3,0)");
    CHECK_ERROR(Conv2d(2, 4, {3, 0}), "Conv2d", "kernel (3,0)");

    MaxPool2d pool(3);
    CHECK_ERROR(pool(N({1, 2, 2, 2}, 67)), "max_pool2d", "kernel spans 3x3", "2x2");
    CHECK_ERROR(pool(N({2, 2}, 68)), "max_pool2d", "4-D", "[2,2]");
    CHECK_ERROR(MaxPool2d(2, 2, 2), "MaxPool2d", "at most half the kernel");
    CHECK_ERROR(max_pool2d(x, 2, 2, {0, 2}), "max_pool2d", "padding (0,2)", "half the kernel (2,2)");

    BatchNorm2d bn(4);
    CHECK_ERROR(bn(x), "BatchNorm2d", "[1,3,5,5]", "3 channels", "4 features");
    CHECK_ERROR(bn(N({4, 5}, 69)), "BatchNorm2d", "4-D", "[4,5]");
    BatchNorm2d bn3(3);
    bn3.to(kFloat64);
    CHECK_ERROR(bn3(N({1, 3, 1, 1}, 70)), "more than 1 value per channel", "[1,3,1,1]");
    CHECK(bn3.buffer("num_batches_tracked").item<int64_t>() == 0);  // a rejected batch is not counted
    CHECK_ERROR(bn3(N({1, 3, 2, 2}, 70, kFloat32)), "batch_norm2d", "float32", "float64");
    CHECK_ERROR(BatchNorm2d(0), "num_features");
    CHECK_ERROR(BatchNorm2d(3, 1e-5, 1.5), "momentum");
    CHECK_ERROR(BatchNorm2d(3, 1e-5, 0.1, true, BatchNormMode::PerStep, 0), "num_steps", "per_step");
    CHECK_ERROR(BatchNorm2d(3, 1e-5, 0.1, true, BatchNormMode::RunningStats, 4), "num_steps", "running_stats");

    CHECK_ERROR(unfold2d(x, 3, {1, 0}), "unfold2d", "stride (1,0)");
    CHECK_ERROR(unfold2d(x, 3, 1, -1), "unfold2d", "padding (-1,-1)");
    CHECK_ERROR(unfold2d(x, 6), "unfold2d", "kernel spans 6x6", "5x5", "[1,3,5,5]");
    CHECK_ERROR(unfold2d(x, 3, 1, 0, 3), "unfold2d", "kernel spans 7x7");
    CHECK_ERROR(unfold2d(N({3, 5, 5}, 71), 2), "unfold2d", "4-D", "[3,5,5]");
    CHECK_ERROR(unfold2d(arange(16.0).reshape({1, 1, 4, 4}), 2), "unfold2d", "int64");
    CHECK_ERROR(fold2d(N({1, 10, 4}, 72), 3, 2), "fold2d", "10 rows", "not a multiple", "2x2 = 4");
    CHECK_ERROR(fold2d(N({1, 8, 5}, 73), 3, 2), "fold2d", "5 columns", "2x2 = 4 window positions");
    CHECK_ERROR(fold2d(N({1, 8}, 74), 3, 2), "fold2d", "3-D", "[1,8]");
    CHECK_ERROR(fold2d(N({1, 4, 4}, 75), {3, 0}, 2), "fold2d", "output size must be positive", "3x0");
    CHECK_ERROR(fold2d(N({1, 16, 4}, 75), 3, 4), "fold2d", "kernel spans 4x4", "3x3");
  }
}
