// Tests of tensor/: geometry and views, creation and RNG, printing, and every raw kernel against
// plain reference loops (contiguous, transposed, broadcast and zero-size inputs; float32,
// float64, int64), plus the error messages.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "../tensor/backend.h"
#include "../tensor/build_info.h"
#include "../tensor/cpu/blocked_sum.h"
#include "../tensor/cpu/cpu_allocator.h"
#include "../tensor/cpu/streaming_store.h"
#include "../tensor/cpu/vec_math.h"
#include "../tensor/creation.h"
#include "../tensor/kernels.h"
#include "../tensor/tensor.h"

using namespace mg;
namespace k = mg::kernels;

namespace {

// ---- helpers ----

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const mg::Error& e) {
    return e.what();
  }
  return "<no mg::Error thrown>";
}

#define CHECK_ERROR(expr, substring)                                                   \
  do {                                                                                 \
    const std::string message_ = error_of([&] { (void)(expr); });                      \
    CHECK_MESSAGE(message_.find(substring) != std::string::npos, "message: ", message_); \
  } while (0)

void check_close(const std::vector<double>& got, const std::vector<double>& want, double tol = 1e-5) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i])) {
      CHECK_MESSAGE(std::isnan(got[i]), "at ", i);
      continue;
    }
    if (std::isinf(want[i])) {
      CHECK_MESSAGE(got[i] == want[i], "at ", i);
      continue;
    }
    const double scale = std::max(1.0, std::abs(want[i]));
    CHECK_MESSAGE(std::abs(got[i] - want[i]) <= tol * scale, "at ", i, ": got ", got[i], ", want ", want[i]);
  }
}

std::vector<double> iota_values(int64_t n, double start = 0.0, double step = 1.0) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = start + step * static_cast<double>(i);
  return v;
}

// Deterministic pseudo-random values in [-2, 2) (not the library RNG: independent reference).
std::vector<double> test_values(int64_t n, uint32_t seed = 1) {
  std::vector<double> v(static_cast<size_t>(n));
  uint32_t s = seed * 2654435761u + 12345u;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<double>(s >> 8) / static_cast<double>(1u << 24) * 4.0 - 2.0;
  }
  return v;
}

Tensor make(const std::vector<double>& v, const Shape& shape, DType dtype = kFloat64) {
  return tensor(v, shape, dtype);
}

std::vector<int64_t> unravel(int64_t i, const Shape& shape) {
  std::vector<int64_t> idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = i % shape[d];
    i /= shape[d];
  }
  return idx;
}

int64_t ravel(const std::vector<int64_t>& idx, const Shape& shape) {
  int64_t i = 0;
  for (size_t d = 0; d < shape.size(); ++d) i = i * shape[d] + idx[d];
  return i;
}

// Value of a row-major array of `shape` at out_idx, broadcasting (right-aligned) like NumPy.
double bget(const std::vector<double>& v, const Shape& shape, const std::vector<int64_t>& out_idx) {
  std::vector<int64_t> idx(shape.size());
  const size_t lead = out_idx.size() - shape.size();
  for (size_t d = 0; d < shape.size(); ++d) idx[d] = shape[d] == 1 ? 0 : out_idx[lead + d];
  return v[static_cast<size_t>(ravel(idx, shape))];
}

// A transposed (non-contiguous) view of a 2-d tensor: the values of t.T.
Tensor transposed(const Tensor& t) {
  return k::as_strided(t, {t.shape()[1], t.shape()[0]}, {t.strides()[1], t.strides()[0]}, t.offset());
}

// A non-contiguous tensor with the given shape and row-major values: every other element of a
// larger buffer.
Tensor strided_copy(const std::vector<double>& v, const Shape& shape, DType dtype) {
  const int64_t n = numel_of(shape);
  std::vector<double> wide(static_cast<size_t>(2 * n + 1), -99.0);
  for (int64_t i = 0; i < n; ++i) wide[static_cast<size_t>(1 + 2 * i)] = v[static_cast<size_t>(i)];
  Tensor base = make(wide, {2 * n + 1}, dtype);
  Strides strides = contiguous_strides(shape);
  for (auto& s : strides) s *= 2;
  return k::as_strided(base, shape, strides, 1);
}

std::string str(const Tensor& t) {
  std::ostringstream out;
  out << t;
  return out.str();
}

}  // namespace

TEST_SUITE("tensor") {

// ================================================================ geometry

TEST_CASE("empty tensors have contiguous geometry") {
  Tensor t = empty({3, 4});
  CHECK(t.defined());
  CHECK(t.shape() == Shape{3, 4});
  CHECK(t.strides() == Strides{4, 1});
  CHECK(t.numel() == 12);
  CHECK(t.dim() == 2);
  CHECK(t.dtype() == kFloat32);
  CHECK(t.device() == kCPU);
  CHECK(t.is_contiguous());
  CHECK(t.size(-1) == 4);
  CHECK(t.size(0) == 3);
  CHECK(t.stride(-2) == 4);
  CHECK_ERROR(t.size(2), "size: dim 2 is out of range");
  CHECK_ERROR(t.stride(-3), "stride: dim -3 is out of range");
  CHECK_ERROR(empty({2, -1}), "empty: negative dimension -1 in shape [2,-1]");
  CHECK(reinterpret_cast<uintptr_t>(t.raw_data()) % 64 == 0);

  Tensor s = empty({});
  CHECK(s.numel() == 1);
  CHECK(s.dim() == 0);
  Tensor z = empty({0, 5}, kInt64);
  CHECK(z.numel() == 0);
  CHECK(z.is_contiguous());
  CHECK(Tensor().defined() == false);
  CHECK_ERROR(Tensor().shape(), "undefined tensor");
}

TEST_CASE("contiguity ignores size-1 dims and views share storage") {
  Tensor base = make(iota_values(24), {2, 3, 4});
  Tensor t = transposed(k::as_strided(base, {6, 4}, {4, 1}, 0));
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.shape() == Shape{4, 6});
  Tensor odd = k::as_strided(base, {3, 1, 4}, {4, 999, 1}, 0);  // stride of the size-1 dim is ignored
  CHECK(odd.is_contiguous());
  Tensor row = k::as_strided(base, {4}, {1}, 8);
  CHECK(row.storage() == base.storage());
  CHECK(row.to_vector() == std::vector<double>{8, 9, 10, 11});
  CHECK(static_cast<double*>(row.raw_data()) == base.data_ptr<double>() + 8);
  CHECK(t.to_vector<int>()[1] == 4);  // t[0][1] = base[1][0]
  CHECK_ERROR(base.data_ptr<float>(), "data_ptr: tensor has dtype float64, asked for float32");
}

TEST_CASE("views are bounds-checked") {
  Tensor base = zeros({10});
  CHECK_ERROR(k::as_strided(base, {3, 4}, {4, 1}, 0), "as_strided: shape [3,4] with strides [4,1] and offset 0");
  CHECK_ERROR(k::as_strided(base, {3, 4}, {4, 1}, 0), "outside a storage of 10 elements");
  CHECK_ERROR(k::as_strided(base, {2}, {1}, -1), "negative storage offset");
  CHECK_ERROR(k::as_strided(base, {2, 2}, {1}, 0), "have different lengths");
  CHECK_ERROR(Tensor::make_view(base, {11}, {1}, 0), "view:");
  CHECK_NOTHROW(k::as_strided(base, {0, 100}, {100, 1}, 0));  // nothing reachable
  CHECK_NOTHROW(k::as_strided(base, {5, 2}, {2, 1}, 0));
  CHECK_NOTHROW(k::as_strided(base, {3}, {0}, 9));
}

TEST_CASE("item, values and describe") {
  CHECK(scalar(3.5).item() == 3.5);
  CHECK(tensor({7}, kInt64).item<int64_t>() == 7);
  CHECK_ERROR(zeros({2, 3}).item(), "item: tensor of shape [2,3] has 6 elements, expected 1");
  CHECK(describe(zeros({3, 4})) == "[3,4] float32 cpu");
  CHECK(describe(zeros({}, kInt64)) == "[] int64 cpu");
  CHECK(describe(Tensor()) == "undefined");
  Tensor t = make(iota_values(6), {2, 3});
  CHECK(transposed(t).to_vector() == std::vector<double>{0, 3, 1, 4, 2, 5});
  CHECK(zeros({0}).to_vector().empty());
}

// ================================================================ printing

TEST_CASE("printing") {
  CHECK(str(tensor({0.5, 1.0, 2.0}, kFloat64)) == "tensor([0.5, 1.0, 2.0], dtype=float64)");
  CHECK(str(tensor({0.5, 1.0, 2.0})) == "tensor([0.5, 1.0, 2.0])");
  CHECK(str(tensor({1, 2, 3}, kInt64)) == "tensor([1, 2, 3], dtype=int64)");
  CHECK(str(scalar(3.5)) == "tensor(3.5)");
  CHECK(str(scalar(2, kInt64)) == "tensor(2, dtype=int64)");
  CHECK(str(Tensor()) == "tensor(undefined)");
  CHECK(str(tensor({1.5, -10.25})) == "tensor([   1.5, -10.25])");
  CHECK(str(make({1, 2, 3, 4}, {2, 2}, kFloat32)) == "tensor([[1.0, 2.0],\n        [3.0, 4.0]])");
  CHECK(str(make(iota_values(8), {2, 2, 2}, kInt64)) ==
        "tensor([[[0, 1],\n         [2, 3]],\n\n        [[4, 5],\n         [6, 7]]], dtype=int64)");
  CHECK(str(zeros({0})) == "tensor([])");
  CHECK(str(zeros({2, 0}, kFloat64)) == "tensor([], size=[2,0], dtype=float64)");
  CHECK(str(tensor({0.1})) == "tensor([0.1])");
  CHECK(str(tensor({1.0 / 3.0}, kFloat64)) == "tensor([0.3333333333], dtype=float64)");
  CHECK(str(tensor({std::nan(""), INFINITY, -INFINITY})) == "tensor([ nan,  inf, -inf])");
  CHECK(str(tensor({1e20})) == "tensor([1e+20])");
  const std::string big = str(arange(2000));
  CHECK(big == "tensor([   0,    1,    2, ..., 1997, 1998, 1999], dtype=int64)");
  const std::string big2 = str(zeros({100, 100}));
  CHECK(big2.find("...") != std::string::npos);
  CHECK(big2.size() < 400);
}

// ================================================================ creation

TEST_CASE("constants, ranges and values") {
  CHECK(zeros({2, 2}).to_vector() == std::vector<double>{0, 0, 0, 0});
  CHECK(ones({3}, kInt64).to_vector() == std::vector<double>{1, 1, 1});
  CHECK(full({2}, 2.5, kFloat64).to_vector() == std::vector<double>{2.5, 2.5});
  Tensor t = full({2, 3}, 4.0, kInt64);
  CHECK(zeros_like(t).dtype() == kInt64);
  CHECK(ones_like(t).shape() == Shape{2, 3});
  CHECK(full_like(t, 9).to_vector()[5] == 9);
  CHECK(empty_like(t).shape() == Shape{2, 3});

  CHECK(arange(5).to_vector() == std::vector<double>{0, 1, 2, 3, 4});
  CHECK(arange(5).dtype() == kInt64);
  CHECK(arange(1, 2, 0.25, kFloat64).to_vector() == std::vector<double>{1, 1.25, 1.5, 1.75});
  CHECK(arange(5, 0, -2).to_vector() == std::vector<double>{5, 3, 1});
  CHECK(arange(3, 3).numel() == 0);
  CHECK_ERROR(arange(0, 5, 0), "arange: step must be nonzero");
  CHECK_ERROR(arange(5, 0, 1), "arange: step 1 goes away from end");
  check_close(linspace(0, 1, 5).to_vector(), {0, 0.25, 0.5, 0.75, 1});
  CHECK(linspace(2, 3, 1).to_vector() == std::vector<double>{2});
  CHECK(linspace(2, 3, 0).numel() == 0);
  CHECK_ERROR(linspace(0, 1, -1), "linspace");

  CHECK(tensor({1.5, 2.5}, kFloat64).to_vector() == std::vector<double>{1.5, 2.5});
  CHECK(tensor(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}).shape() == Shape{2, 3});
  CHECK(tensor(std::vector<float>{1.5f}, {1}).dtype() == kFloat32);
  CHECK(tensor(std::vector<int64_t>{4, 5}, {2}).to_vector<int64_t>() == std::vector<int64_t>{4, 5});
  CHECK_ERROR(tensor(std::vector<double>{1, 2, 3, 4, 5}, {2, 3}), "tensor: 5 values do not fill shape [2,3] (6 elements)");
  CHECK_ERROR(tensor({std::nan("")}, kInt64), "does not fit int64");
  CHECK(scalar(2.0, kFloat64).dim() == 0);
  CHECK(tensor({}).numel() == 0);
}

TEST_CASE("philox 4x32-10 known-answer vectors (Random123)") {
  using A4 = std::array<uint32_t, 4>;
  using A2 = std::array<uint32_t, 2>;
  CHECK(philox4x32_10(A4{0, 0, 0, 0}, A2{0, 0}) == A4{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(philox4x32_10(A4{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, A2{0xffffffff, 0xffffffff}) ==
        A4{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  CHECK(philox4x32_10(A4{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, A2{0xa4093822, 0x299f31d0}) ==
        A4{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST_CASE("random numbers: mapping, determinism, offsets") {
  // Element i of a draw is philox(counter offset + i, key seed) mapped as documented in philox.h.
  Generator gen(0x0123456789abcdefULL);
  Tensor u = rand({5}, kFloat32, kCPU, &gen);
  CHECK(gen.offset() == 5);
  for (int i = 0; i < 5; ++i) {
    const auto r = philox4x32_10({static_cast<uint32_t>(i), 0, 0, 0}, {0x89abcdefu, 0x01234567u});
    CHECK(u.to_vector<float>()[i] == static_cast<float>(r[0] >> 8) * 0x1p-24f);
  }
  Generator gd(7);
  Tensor ud = rand({3}, kFloat64, kCPU, &gd);
  for (int i = 0; i < 3; ++i) {
    const auto r = philox4x32_10({static_cast<uint32_t>(i), 0, 0, 0}, {7, 0});
    const uint64_t bits = (static_cast<uint64_t>(r[0]) << 21) ^ (r[1] >> 11);
    CHECK(ud.to_vector()[i] == static_cast<double>(bits) * 0x1p-53);
  }

  // Counter-based: two draws of 4 and 6 equal one draw of 10.
  Generator g1(42), g2(42);
  std::vector<double> a = randn({4}, kFloat64, kCPU, &g1).to_vector();
  std::vector<double> b = randn({6}, kFloat64, kCPU, &g1).to_vector();
  a.insert(a.end(), b.begin(), b.end());
  CHECK(a == randn({10}, kFloat64, kCPU, &g2).to_vector());

  manual_seed(3);
  const std::vector<double> first = rand({100}).to_vector();
  CHECK(default_generator().offset() == 100);
  manual_seed(3);
  CHECK(rand({100}).to_vector() == first);
  manual_seed(4);
  CHECK(rand({100}).to_vector() != first);
  CHECK(default_generator().seed() == 4);
  manual_seed(0);
}

TEST_CASE("random numbers: distributions and errors") {
  Generator gen(1);
  const int64_t n = 200000;  // large enough to take the parallel path
  const std::vector<double> u = uniform({n}, -1.0, 3.0, kFloat32, kCPU, &gen).to_vector();
  double mean = 0;
  for (double v : u) {
    CHECK_MESSAGE((v >= -1.0 && v < 3.0), v);
    mean += v / n;
  }
  CHECK(mean == doctest::Approx(1.0).epsilon(0.01));

  const std::vector<double> z = normal({n}, 2.0, 0.5, kFloat64, kCPU, &gen).to_vector();
  double m = 0, m2 = 0;
  for (double v : z) {
    CHECK(std::isfinite(v));
    m += v / n;
  }
  for (double v : z) m2 += (v - m) * (v - m) / n;
  CHECK(m == doctest::Approx(2.0).epsilon(0.01));
  CHECK(std::sqrt(m2) == doctest::Approx(0.5).epsilon(0.01));

  Tensor ints = randint(-3, 4, {1000}, kCPU, &gen);
  CHECK(ints.dtype() == kInt64);
  std::vector<int> counts(7, 0);
  for (int64_t v : ints.to_vector<int64_t>()) {
    REQUIRE((v >= -3 && v < 4));
    ++counts[static_cast<size_t>(v + 3)];
  }
  for (int c : counts) CHECK(c > 80);

  CHECK(rand({0, 3}).numel() == 0);
  CHECK_ERROR(randint(3, 3, {2}), "randint: high (3) must be greater than low (3)");
  CHECK_ERROR(rand({2}, kInt64), "rand: dtype int64 is not supported");
  CHECK_ERROR(uniform({2}, 1.0, 0.0), "uniform: need finite low <= high");
  CHECK_ERROR(normal({2}, 0.0, -1.0), "normal: need finite mean and std >= 0");
  CHECK_ERROR(rand({-1}), "negative dimension");
}

// ================================================================ copies and conversions

TEST_CASE("stream_copy copies any span at any alignment, and nothing past it") {
  std::vector<unsigned char> src(512), dst(600);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<unsigned char>(i * 7 + 1);
  for (int64_t offset : {0, 1, 4, 15, 16, 33, 63, 64}) {
    for (int64_t bytes : {0, 1, 15, 16, 17, 63, 64, 65, 130, 255, 448}) {
      CAPTURE(offset);
      CAPTURE(bytes);
      std::fill(dst.begin(), dst.end(), static_cast<unsigned char>(0xEE));
      cpu::stream_copy(dst.data() + offset, src.data() + 3, bytes);
      cpu::streaming_store_fence();
      int64_t wrong = 0;
      for (int64_t i = 0; i < static_cast<int64_t>(dst.size()); ++i) {
        const bool inside = i >= offset && i < offset + bytes;
        wrong += dst[static_cast<std::size_t>(i)] != (inside ? src[static_cast<std::size_t>(i - offset + 3)] : 0xEE);
      }
      CHECK(wrong == 0);
    }
  }
}

TEST_CASE("outputs of kStreamingStoreBytes or more (streaming stores) hold what smaller outputs would") {
  // Each op on one tensor just over the threshold, against the same op on pieces of it below the
  // threshold (ordinary stores): the same bits. Pieces start at multiples of 1024 elements, so
  // the vector lanes line up with the whole's.
  const int64_t n = cpu::kStreamingStoreBytes / 4 + 1237;
  const int64_t piece = int64_t{3} << 20;
  Generator gen(5);
  const Tensor x = randn({n}, kFloat32, kCPU, &gen), y = randn({n}, kFloat32, kCPU, &gen);
  const auto by_pieces = [&](const std::function<Tensor(const Tensor&, const Tensor&)>& op) {
    std::vector<float> values;
    for (int64_t start = 0; start < n; start += piece) {
      const int64_t len = std::min(piece, n - start);
      const Tensor part = op(x.narrow(0, start, len), y.narrow(0, start, len));
      const float* p = part.data_ptr<float>();
      values.insert(values.end(), p, p + len);
    }
    return values;
  };
  const auto values = [](const Tensor& t) {
    const float* p = t.data_ptr<float>();
    return std::vector<float>(p, p + t.numel());
  };
  const auto same_bits = [](const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  const auto exp = [](const Tensor& a, const Tensor&) { return k::unary(UnaryOp::Exp, a); };
  const auto gelu = [](const Tensor& a, const Tensor&) { return k::unary(UnaryOp::GeluTanh, a); };
  const auto add = [](const Tensor& a, const Tensor& b) { return k::binary(BinaryOp::Add, a, b); };
  const auto where = [](const Tensor& a, const Tensor& b) { return k::where(k::binary(BinaryOp::Gt, a, b), a, b); };
  CHECK(same_bits(values(exp(x, y)), by_pieces(exp)));
  CHECK(same_bits(values(gelu(x, y)), by_pieces(gelu)));
  CHECK(same_bits(values(add(x, y)), by_pieces(add)));
  CHECK(same_bits(values(where(x, y)), by_pieces(where)));
  CHECK(same_bits(values(k::contiguous(x.narrow(0, 1, n - 1))),
                  std::vector<float>(x.data_ptr<float>() + 1, x.data_ptr<float>() + n)));
  CHECK(same_bits(values(x.clone()), values(x)));
  // In place: the output is also the first input.
  Tensor z = x.clone();
  z.add_(y);
  CHECK(same_bits(values(z), by_pieces(add)));
  // A fill, and an output whose runs are too short to stream (a [n/4, 4] + [n/4, 1] broadcast).
  const Tensor filled = full({n}, 2.5, kFloat32, kCPU);
  CHECK(std::all_of(filled.data_ptr<float>(), filled.data_ptr<float>() + n, [](float v) { return v == 2.5f; }));
  const Tensor rows = x.narrow(0, 0, n / 4 * 4).reshape({n / 4, 4});
  const Tensor column = y.narrow(0, 0, n / 4).reshape({n / 4, 1});
  const std::vector<float> sum = values(k::binary(BinaryOp::Add, rows, column));
  int64_t wrong = 0;
  for (int64_t i = 0; i < n / 4 * 4; ++i)
    wrong += sum[static_cast<std::size_t>(i)] != x.data_ptr<float>()[i] + y.data_ptr<float>()[i / 4];
  CHECK(wrong == 0);
}

TEST_CASE("copies and binary ops of transposed views go by blocks, and match an element walk") {
  // A copy whose two inner dims are swapped runs matrix by matrix through a blocked transpose (8 x 8
  // registers for float32); a binary op with such an operand copies it into place first. Edges
  // (13 x 37), head splits, row strides past the matrix (slices) and every dtype the copy takes.
  Generator gen(21);
  for (DType dtype : {kFloat32, kFloat64, kInt64}) {
    CAPTURE(dtype);
    auto random = [&](const Shape& shape) {
      return k::cast(k::binary(BinaryOp::Mul, randn(shape, kFloat64, kCPU, &gen), full({}, 8.0, kFloat64, kCPU)),
                     dtype);
    };
    const std::vector<Tensor> views = {
        random({3, 13, 37}).transpose(1, 2),
        random({2, 16, 4, 8}).transpose(1, 2),
        k::as_strided(random({20, 50}), {20, 37}, {50, 1}, 3).transpose(0, 1),
        random({9, 70}).transpose(0, 1),
        random({5, 6, 7, 9}).transpose(2, 3).transpose(0, 1),
    };
    for (const Tensor& v : views) {
      CAPTURE(shape_str(v.shape()));
      const Tensor c = k::contiguous(v);
      CHECK(c.is_contiguous());
      CHECK(c.values_as_double() == v.values_as_double());
    }
    if (dtype == kInt64) continue;
    const Tensor a = random({25, 10, 40}), across = random({25, 40, 10}).transpose(1, 2);
    const Tensor bias = random({25, 1, 40}).expand({25, 10, 40});
    const Tensor every_other = k::as_strided(random({25, 10, 80}), {25, 10, 40}, {800, 80, 2}, 0);
    for (const auto& [x, y] : {std::pair{a, across}, std::pair{across, a}, std::pair{bias, across},
                               std::pair{every_other, across}, std::pair{a, every_other}}) {
      const std::vector<double> xv = x.values_as_double(), yv = y.values_as_double();
      const std::vector<double> sum = k::binary(BinaryOp::Add, x, y).values_as_double();
      const std::vector<double> product = k::binary(BinaryOp::Mul, x, y).values_as_double();
      REQUIRE(sum.size() == xv.size());
      int64_t wrong = 0;
      for (std::size_t i = 0; i < xv.size(); ++i) {
        const double want_sum =
            dtype == kFloat32 ? static_cast<float>(xv[i]) + static_cast<float>(yv[i]) : xv[i] + yv[i];
        const double want_product =
            dtype == kFloat32 ? static_cast<float>(xv[i]) * static_cast<float>(yv[i]) : xv[i] * yv[i];
        wrong += sum[i] != want_sum || product[i] != want_product;
      }
      CHECK(wrong == 0);
    }
  }
}

TEST_CASE("clone, contiguous, cast, copy_, fill_") {
  Tensor t = make(iota_values(6), {2, 3});
  Tensor tt = transposed(t);
  Tensor c = k::contiguous(tt);
  CHECK(c.is_contiguous());
  CHECK(c.to_vector() == std::vector<double>{0, 3, 1, 4, 2, 5});
  CHECK(k::contiguous(t).same(t));
  Tensor cl = k::clone(t);
  CHECK_FALSE(cl.storage() == t.storage());
  CHECK(cl.to_vector() == t.to_vector());

  CHECK(k::cast(t, kFloat64).same(t));
  Tensor f = k::cast(make({1.5, -2.7, 3.2}, {3}), kInt64);
  CHECK(f.dtype() == kInt64);
  CHECK(f.to_vector() == std::vector<double>{1, -2, 3});
  Tensor sat = k::cast(make({std::nan(""), 1e30, -1e30}, {3}), kInt64);  // saturates, no UB
  CHECK(sat.data_ptr<int64_t>()[0] == 0);
  CHECK(sat.data_ptr<int64_t>()[1] == std::numeric_limits<int64_t>::max());
  CHECK(sat.data_ptr<int64_t>()[2] == std::numeric_limits<int64_t>::min());
  CHECK(k::cast(tt, kFloat32).to_vector() == std::vector<double>{0, 3, 1, 4, 2, 5});

  Tensor dst = zeros({2, 3}, kFloat32);
  k::copy_(dst, make({1, 2, 3}, {3}));  // broadcast + dtype conversion
  CHECK(dst.to_vector() == std::vector<double>{1, 2, 3, 1, 2, 3});
  k::copy_(transposed(dst), make(iota_values(6), {3, 2}));
  CHECK(dst.to_vector() == std::vector<double>{0, 2, 4, 1, 3, 5});
  CHECK_ERROR(k::copy_(dst, zeros({4})), "copy_: cannot expand [4] to [2,3]");

  // Overlapping source and destination: reads happen before writes.
  Tensor buf = make(iota_values(6), {6});
  k::copy_(k::as_strided(buf, {5}, {1}, 1), k::as_strided(buf, {5}, {1}, 0));
  CHECK(buf.to_vector() == std::vector<double>{0, 0, 1, 2, 3, 4});

  k::fill_(tt, 7);
  CHECK(t.to_vector() == std::vector<double>(6, 7.0));
  k::fill_(zeros({0}), 1.0);
  Tensor s = k::scalar_like(2.5, ones({3}, kFloat64));
  CHECK(s.dim() == 0);
  CHECK(s.dtype() == kFloat64);
  CHECK(s.item() == 2.5);

  // Large: parallel memcpy and strided paths.
  const int64_t n = 300000;
  Tensor big = arange(0, static_cast<double>(n), 1, kFloat64);
  CHECK(k::clone(big).to_vector() == big.to_vector());
  Tensor big2 = k::as_strided(big, {n / 2}, {2}, 0);
  std::vector<double> want(n / 2);
  for (int64_t i = 0; i < n / 2; ++i) want[i] = 2.0 * i;
  CHECK(k::cast(big2, kFloat32).to_vector() == want);
}

TEST_CASE("devices without a backend") {
  CHECK(has_backend(DeviceType::CPU));
  CHECK(&backend_for(kCPU) == &backend_for(Device("cpu")));
  CHECK(std::string(backend_for(kCPU).name()) == "cpu");
  if (!has_backend(DeviceType::CUDA)) {
    CHECK_ERROR(zeros({2}, kFloat32, Device("cuda:0")), "no kernels for device cuda:0");
    // Why there are none: a build without CUDA, or a CUDA build on a machine without a device.
    CHECK_ERROR(k::to_device(zeros({2}), Device("cuda")), build_info().cuda_compiled ? "no CUDA device" : "MG_CUDA=OFF");
  }
  CHECK(k::to_device(zeros({2}), kCPU).defined());
}

TEST_CASE("allocator caches blocks") {
  cpu::release_cached_memory();
  { Tensor t = empty({1000}); }
  const auto before = cpu::allocator_stats();
  { Tensor t = empty({1000}); }
  const auto after = cpu::allocator_stats();
  if (before.cached_bytes > 0) CHECK(after.cache_hits == before.cache_hits + 1);
  cpu::release_cached_memory();
  CHECK(cpu::allocator_stats().cached_bytes == 0);
}

// ================================================================ broadcasting, unary, binary

TEST_CASE("expand_to") {
  Tensor t = make({1, 2, 3}, {3, 1});
  Tensor e = k::expand_to("test", t, {2, 3, 4});
  CHECK(e.strides() == Strides{0, 1, 0});
  CHECK(e.storage() == t.storage());
  CHECK(e.to_vector()[5] == 2);
  CHECK_ERROR(k::expand_to("myop", t, {2, 4}), "myop: cannot expand [3,1] to [2,4]");
  CHECK_ERROR(k::expand_to("myop", t, {1}), "myop: cannot expand [3,1] to [1]");
  CHECK(broadcast_shapes("x", {3, 1}, {4}) == Shape{3, 4});
  CHECK_ERROR(broadcast_shapes("add", {3}, {4}), "add: shapes [3] and [4] cannot be broadcast");
}

namespace {

double ref_unary(UnaryOp op, double x) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Log: return std::log(x);
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Rsqrt: return 1.0 / std::sqrt(x);
    case UnaryOp::Abs: return std::abs(x);
    case UnaryOp::Sin: return std::sin(x);
    case UnaryOp::Cos: return std::cos(x);
    case UnaryOp::Tanh: return std::tanh(x);
    case UnaryOp::Sigmoid: return 1.0 / (1.0 + std::exp(-x));
    case UnaryOp::Relu: return x > 0 ? x : 0;
    case UnaryOp::GeluTanh:
      return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case UnaryOp::GeluErf: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case UnaryOp::Softplus: return std::log(1 + std::exp(x));
    case UnaryOp::Erf: return std::erf(x);
    case UnaryOp::Sign: return x > 0 ? 1 : x < 0 ? -1 : 0;
    case UnaryOp::Reciprocal: return 1 / x;
    case UnaryOp::Square: return x * x;
    case UnaryOp::Count: break;
  }
  return 0;
}

}  // namespace

TEST_CASE("unary ops against reference, all layouts and dtypes") {
  std::vector<double> v = test_values(35, 3);
  v[0] = 0.0;
  for (int o = 0; o < static_cast<int>(UnaryOp::Count); ++o) {
    const UnaryOp op = static_cast<UnaryOp>(o);
    const bool positive = op == UnaryOp::Log || op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt;
    std::vector<double> in = v;
    if (positive)
      for (auto& x : in) x = std::abs(x) + 0.1;
    if (op == UnaryOp::Reciprocal) in[0] = 0.5;
    std::vector<double> want(in.size());
    for (size_t i = 0; i < in.size(); ++i) want[i] = ref_unary(op, in[i]);
    for (DType dt : {kFloat32, kFloat64}) {
      CAPTURE(unary_op_name(op));
      CAPTURE(dt);
      const double tol = dt == kFloat32 ? 2e-6 : 1e-12;
      Tensor c = make(in, {5, 7}, dt);
      Tensor r = k::unary(op, c);
      CHECK(r.dtype() == dt);
      CHECK(r.shape() == Shape{5, 7});
      // float32 inputs are rounded first: compare against the rounded input.
      std::vector<double> want_dt(in.size());
      for (size_t i = 0; i < in.size(); ++i)
        want_dt[i] = ref_unary(op, dt == kFloat32 ? static_cast<double>(static_cast<float>(in[i])) : in[i]);
      check_close(r.to_vector(), want_dt, tol);
      check_close(k::unary(op, strided_copy(in, {5, 7}, dt)).to_vector(), want_dt, tol);
      // transposed input: the result is the transposed values
      Tensor tr = k::unary(op, transposed(make(in, {7, 5}, dt)));
      std::vector<double> want_t(in.size());
      for (int i = 0; i < 5; ++i)
        for (int j = 0; j < 7; ++j) want_t[i * 7 + j] = want_dt[j * 5 + i];
      check_close(tr.to_vector(), want_t, tol);
      CHECK(k::unary(op, zeros({0, 3}, dt)).shape() == Shape{0, 3});
      CHECK(k::unary(op, make({in[1]}, {}, dt)).dim() == 0);
    }
  }
  // Extremes.
  check_close(k::unary(UnaryOp::Sigmoid, make({-1000, 1000, 0}, {3})).to_vector(), {0, 1, 0.5});
  check_close(k::unary(UnaryOp::Softplus, make({-1000, 1000, 0}, {3})).to_vector(), {0, 1000, std::log(2.0)});
  check_close(k::unary(UnaryOp::Relu, make({std::nan(""), -1}, {2})).to_vector(), {std::nan(""), 0});
  // int64 ops
  Tensor ints = make({-3, 0, 5}, {3}, kInt64);
  CHECK(k::unary(UnaryOp::Neg, ints).to_vector() == std::vector<double>{3, 0, -5});
  CHECK(k::unary(UnaryOp::Abs, ints).to_vector() == std::vector<double>{3, 0, 5});
  CHECK(k::unary(UnaryOp::Sign, ints).to_vector() == std::vector<double>{-1, 0, 1});
  CHECK(k::unary(UnaryOp::Square, ints).to_vector() == std::vector<double>{9, 0, 25});
  CHECK(k::unary(UnaryOp::Square, ints).dtype() == kInt64);
  CHECK_ERROR(k::unary(UnaryOp::Exp, ints), "exp: dtype int64 is not supported (needs float32 or float64)");
  CHECK_ERROR(k::unary(UnaryOp::Exp, Tensor()), "exp: input is an undefined tensor");
  // Large enough for the parallel path.
  const int64_t n = 100003;
  std::vector<double> big = test_values(n, 9);
  std::vector<double> want(big.size());
  for (size_t i = 0; i < big.size(); ++i) want[i] = std::tanh(big[i]);
  check_close(k::unary(UnaryOp::Tanh, make(big, {n})).to_vector(), want, 1e-12);
  check_close(k::unary(UnaryOp::Tanh, strided_copy(big, {n}, kFloat64)).to_vector(), want, 1e-12);
}

namespace {

double ref_binary(BinaryOp op, double a, double b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Pow: return std::pow(a, b);
    case BinaryOp::Maximum: return std::max(a, b);
    case BinaryOp::Minimum: return std::min(a, b);
    case BinaryOp::MulPositiveMask: return a * (b > 0 ? 1.0 : 0.0);
    case BinaryOp::Eq: return a == b;
    case BinaryOp::Ne: return a != b;
    case BinaryOp::Lt: return a < b;
    case BinaryOp::Le: return a <= b;
    case BinaryOp::Gt: return a > b;
    case BinaryOp::Ge: return a >= b;
    case BinaryOp::Count: break;
  }
  return 0;
}

}  // namespace

TEST_CASE("binary ops against reference with broadcasting") {
  struct Case {
    Shape a, b;
  };
  const std::vector<Case> cases = {
      {{2, 3, 4}, {2, 3, 4}}, {{2, 3, 4}, {4}},  {{3, 1}, {1, 5}}, {{1}, {2, 3}},
      {{}, {3, 2}},           {{4, 1, 3}, {2, 1}}, {{0, 3}, {3}},    {{2, 0}, {1}},
  };
  for (int o = 0; o < static_cast<int>(BinaryOp::Count); ++o) {
    const BinaryOp op = static_cast<BinaryOp>(o);
    for (const Case& c : cases) {
      for (DType dt : {kFloat32, kFloat64, kInt64}) {
        if (dt == kInt64 && (op == BinaryOp::Div || op == BinaryOp::Pow)) continue;
        CAPTURE(binary_op_name(op));
        CAPTURE(dt);
        CAPTURE(shape_str(c.a));
        CAPTURE(shape_str(c.b));
        std::vector<double> va = test_values(numel_of(c.a), 5), vb = test_values(numel_of(c.b), 6);
        for (auto& x : va) x = dt == kInt64 ? std::round(x * 3) : (op == BinaryOp::Pow ? std::abs(x) + 0.1 : x);
        for (auto& x : vb) x = dt == kInt64 ? std::round(x * 3) : x;
        if (op == BinaryOp::Div)
          for (auto& x : vb) x = x == 0 ? 1 : x;
        if (!vb.empty() && !va.empty()) vb[0] = va[0];  // exercise equality
        if (dt == kFloat32) {
          for (auto& x : va) x = static_cast<float>(x);
          for (auto& x : vb) x = static_cast<float>(x);
        }
        const Shape out_shape = broadcast_shapes("test", c.a, c.b);
        std::vector<double> want(static_cast<size_t>(numel_of(out_shape)));
        for (int64_t i = 0; i < numel_of(out_shape); ++i) {
          const auto idx = unravel(i, out_shape);
          want[i] = ref_binary(op, bget(va, c.a, idx), bget(vb, c.b, idx));
        }
        const double tol = dt == kFloat32 ? 1e-6 : 1e-12;
        Tensor r = k::binary(op, make(va, c.a, dt), make(vb, c.b, dt));
        CHECK(r.shape() == out_shape);
        CHECK(r.dtype() == dt);
        check_close(r.to_vector(), want, tol);
        check_close(k::binary(op, strided_copy(va, c.a, dt), strided_copy(vb, c.b, dt)).to_vector(), want, tol);
      }
    }
  }
  // Transposed operand.
  Tensor a = make(iota_values(6), {2, 3});
  Tensor b = make(iota_values(6, 10), {3, 2});
  check_close(k::binary(BinaryOp::Add, a, transposed(b)).to_vector(), {10, 13, 16, 14, 17, 20});
  // int64 wraps around instead of overflowing.
  Tensor big = make({9.2e18}, {1}, kInt64);
  CHECK_NOTHROW(k::binary(BinaryOp::Add, big, big));
  // NaN propagates through maximum/minimum.
  check_close(k::binary(BinaryOp::Maximum, make({std::nan(""), 1}, {2}), make({1, std::nan("")}, {2})).to_vector(),
              {std::nan(""), std::nan("")});
  // Large: the parallel path and the scalar-broadcast fast paths.
  const int64_t n = 100000;
  std::vector<double> v = test_values(n, 2);
  Tensor x = make(v, {n});
  Tensor two = scalar(2.0, kFloat64);
  std::vector<double> want(v.size()), want2(v.size());
  for (size_t i = 0; i < v.size(); ++i) want[i] = v[i] * 2.0, want2[i] = 2.0 - v[i];
  check_close(k::binary(BinaryOp::Mul, x, two).to_vector(), want, 0);
  check_close(k::binary(BinaryOp::Sub, two, x).to_vector(), want2, 0);
  // Both operands broadcast along the run: an expanded column and a scalar (mean's backward).
  for (DType dt : {kFloat32, kFloat64}) {
    const Tensor col = make({1, 2, 3}, {3, 1}, dt).expand({3, 4});
    check_close(k::binary(BinaryOp::Div, col, scalar(2.0, dt)).to_vector(),
                {0.5, 0.5, 0.5, 0.5, 1, 1, 1, 1, 1.5, 1.5, 1.5, 1.5}, 0);
  }
}

TEST_CASE("binary op errors") {
  CHECK_ERROR(k::binary(BinaryOp::Add, zeros({2}), zeros({2}, kFloat64)), "add: dtypes float32 and float64 do not match");
  CHECK_ERROR(k::binary(BinaryOp::Mul, zeros({2, 3}), zeros({4})), "mul: shapes [2,3] and [4] cannot be broadcast");
  CHECK_ERROR(k::binary(BinaryOp::Div, zeros({2}, kInt64), ones({2}, kInt64)), "div: dtype int64 is not supported");
  CHECK_ERROR(k::binary(BinaryOp::Pow, zeros({2}, kInt64), ones({2}, kInt64)), "pow: dtype int64 is not supported");
  CHECK_ERROR(k::binary(BinaryOp::Add, zeros({2}), Tensor()), "add: second input is an undefined tensor");
  CHECK(k::binary(BinaryOp::Lt, make({1, 2}, {2}, kInt64), make({2, 2}, {2}, kInt64)).to_vector() ==
        std::vector<double>{1, 0});
}

TEST_CASE("where broadcasts over all three") {
  Tensor cond = make({1, 0, 1}, {3}, kInt64);
  Tensor a = make({1, 2}, {2, 1});
  Tensor b = scalar(-1, kFloat64);
  Tensor r = k::where(cond, a, b);
  CHECK(r.shape() == Shape{2, 3});
  CHECK(r.to_vector() == std::vector<double>{1, -1, 1, 2, -1, 2});
  Tensor fcond = make({0.5, 0.0}, {2}, kFloat32);
  CHECK(k::where(fcond, make({1, 2}, {2}), make({3, 4}, {2})).to_vector() == std::vector<double>{1, 4});
  CHECK_ERROR(k::where(cond, a, scalar(1, kFloat32)), "where: dtypes float64 and float32 do not match");
  CHECK_ERROR(k::where(make({1, 0}, {2}), a, make({1, 2, 3}, {3})), "where: shapes");
  CHECK(k::where(zeros({0}), zeros({0}), zeros({0})).numel() == 0);
}

// ================================================================ reductions

namespace {

// Reference reduction of row-major values over dims (keepdim shape).
std::vector<double> ref_reduce(ReduceOp op, const std::vector<double>& v, const Shape& shape,
                               const std::vector<int>& dims) {
  const Shape out_shape = reduced_shape(shape, dims, true);
  const double init = op == ReduceOp::Sum ? 0.0 : op == ReduceOp::Max ? -INFINITY : INFINITY;
  std::vector<double> out(static_cast<size_t>(numel_of(out_shape)), init);
  for (int64_t i = 0; i < numel_of(shape); ++i) {
    auto idx = unravel(i, shape);
    for (int d : dims) idx[d] = 0;
    double& acc = out[static_cast<size_t>(ravel(idx, out_shape))];
    if (op == ReduceOp::Sum) acc += v[i];
    if (op == ReduceOp::Max) acc = std::max(acc, v[i]);
    if (op == ReduceOp::Min) acc = std::min(acc, v[i]);
  }
  return out;
}

}  // namespace

TEST_CASE("reductions against reference over every dim subset") {
  const Shape shape{3, 4, 5};
  const std::vector<double> v = test_values(60, 11);
  const std::vector<std::vector<int64_t>> dim_sets = {{}, {0}, {1}, {2}, {-1}, {0, 1}, {0, 2}, {1, 2}, {0, 1, 2}};
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
    for (DType dt : {kFloat32, kFloat64, kInt64}) {
      std::vector<double> vals = v;
      for (auto& x : vals) x = dt == kInt64 ? std::round(x * 10) : dt == kFloat32 ? static_cast<float>(x) : x;
      for (const auto& dims : dim_sets) {
        CAPTURE(reduce_op_name(op));
        CAPTURE(dt);
        CAPTURE(dims.size());
        const std::vector<int> wd = wrap_dims("test", dims, 3);
        const std::vector<double> want = ref_reduce(op, vals, shape, wd);
        for (bool keepdim : {false, true}) {
          Tensor r = k::reduce(op, make(vals, shape, dt), dims, keepdim);
          CHECK(r.shape() == reduced_shape(shape, wd, keepdim));
          CHECK(r.dtype() == dt);
          check_close(r.to_vector(), want, dt == kFloat32 ? 1e-6 : 1e-12);
        }
        check_close(k::reduce(op, strided_copy(vals, shape, dt), dims, false).to_vector(), want, 1e-6);
      }
    }
  }
  // Transposed input: sum over rows and columns.
  Tensor m = make(iota_values(6), {2, 3});
  Tensor mt = transposed(m);  // [[0,3],[1,4],[2,5]]
  CHECK(k::reduce(ReduceOp::Sum, mt, {0}, false).to_vector() == std::vector<double>{3, 12});
  CHECK(k::reduce(ReduceOp::Sum, mt, {1}, false).to_vector() == std::vector<double>{3, 5, 7});
  CHECK(k::reduce(ReduceOp::Max, mt, {1}, true).shape() == Shape{3, 1});
  // Broadcast (stride-0) input.
  Tensor e = k::expand_to("test", make({1, 2, 3}, {3}), {4, 3});
  CHECK(k::reduce(ReduceOp::Sum, e, {0}, false).to_vector() == std::vector<double>{4, 8, 12});
  CHECK(k::reduce(ReduceOp::Sum, e, {}, false).item() == 24);
  // 0-d.
  CHECK(k::reduce(ReduceOp::Sum, scalar(4.0), {}, false).item() == 4.0);
  CHECK(k::reduce(ReduceOp::Max, scalar(4.0), {0}, true).dim() == 0);
  // NaN propagates through max.
  CHECK(std::isnan(k::reduce(ReduceOp::Max, make({1, std::nan(""), 3}, {3}), {}, false).item()));
}

TEST_CASE("reductions of empty and large tensors") {
  CHECK(k::reduce(ReduceOp::Sum, zeros({0}), {}, false).item() == 0);
  Tensor s = k::reduce(ReduceOp::Sum, zeros({2, 0}), {1}, false);
  CHECK(s.to_vector() == std::vector<double>{0, 0});
  CHECK(k::reduce(ReduceOp::Max, zeros({0, 3}), {1}, false).shape() == Shape{0});
  CHECK_ERROR(k::reduce(ReduceOp::Max, zeros({0, 3}), {0}, false),
              "max: cannot reduce over an empty dimension (input [0,3] float32 cpu, dims [0])");
  CHECK_ERROR(k::reduce(ReduceOp::Min, zeros({0}), {}, false), "min: cannot reduce over an empty dimension");
  CHECK_ERROR(k::reduce(ReduceOp::Sum, zeros({2}), {1}, false), "sum: dim 1 is out of range");
  CHECK_ERROR(k::reduce(ReduceOp::Sum, zeros({2, 2}), {0, -2}, false), "appears twice");

  // Large: the chunked full reduction, inner (row) and outer (column) strategies, in parallel.
  const Shape shape{300, 501};
  const std::vector<double> v = test_values(numel_of(shape), 13);
  Tensor t = make(v, shape);
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max}) {
    for (const std::vector<int>& dims : {std::vector<int>{0, 1}, std::vector<int>{0}, std::vector<int>{1}}) {
      std::vector<int64_t> d64(dims.begin(), dims.end());
      const std::vector<double> want = ref_reduce(op, v, shape, dims);
      check_close(k::reduce(op, t, d64, false).to_vector(), want, 1e-10);
      // the same through a transposed view
      std::vector<int64_t> dt;
      for (int d : dims) dt.push_back(1 - d);
      std::sort(dt.begin(), dt.end());
      check_close(k::reduce(op, transposed(t), dt, false).to_vector(), want, 1e-10);
    }
  }
  // float32 sums accumulate in double.
  Tensor ones_f = ones({1 << 20});
  CHECK(k::reduce(ReduceOp::Sum, ones_f, {}, false).item() == double(1 << 20));
  Tensor big = full({1 << 17}, 1.0, kInt64);
  CHECK(k::reduce(ReduceOp::Sum, big, {}, false).item<int64_t>() == (1 << 17));
}

TEST_CASE("argmax and argmin") {
  Tensor t = make({1, 5, 5, 2, 0, 0, 9, 9, 3, -1, -1, 7}, {3, 4});
  auto [vmax, imax] = k::arg_reduce(ReduceOp::Max, t, 1, false);
  CHECK(vmax.to_vector() == std::vector<double>{5, 9, 7});
  CHECK(imax.to_vector() == std::vector<double>{1, 2, 3});  // first index wins ties
  CHECK(imax.dtype() == kInt64);
  auto [vmin, imin] = k::arg_reduce(ReduceOp::Min, t, 0, true);
  CHECK(vmin.shape() == Shape{1, 4});
  CHECK(vmin.to_vector() == std::vector<double>{0, -1, -1, 2});
  CHECK(imin.to_vector() == std::vector<double>{1, 2, 2, 0});
  auto [vt, it] = k::arg_reduce(ReduceOp::Max, transposed(t), 0, false);
  CHECK(it.to_vector() == std::vector<double>{1, 2, 3});
  auto [vn, in] = k::arg_reduce(ReduceOp::Max, make({1, std::nan(""), 3, std::nan("")}, {4}), 0, false);
  CHECK(in.item() == 1);
  CHECK(std::isnan(vn.item()));
  auto [v0, i0] = k::arg_reduce(ReduceOp::Max, scalar(2.0), 0, false);
  CHECK(v0.dim() == 0);
  CHECK(i0.item() == 0);
  auto [vi, ii] = k::arg_reduce(ReduceOp::Min, make({4, 2, 8}, {3}, kInt64), -1, false);
  CHECK(vi.item() == 2);
  CHECK(ii.item() == 1);
  CHECK(k::arg_reduce(ReduceOp::Max, zeros({0, 3}), 1, false).first.shape() == Shape{0});
  CHECK_ERROR(k::arg_reduce(ReduceOp::Max, zeros({3, 0}), 1, false), "argmax: cannot reduce over an empty dimension");
  CHECK_ERROR(k::arg_reduce(ReduceOp::Sum, zeros({3}), 0, false), "only max and min");
}

TEST_CASE("argmax and argmin of float32 along a non-inner dim: ties, NaN and infinities, column by column") {
  // [3, 5, 37]: the reduced dim has stride 37 and the outputs are neighbours, the layout the
  // vectorised column path takes; checked against a plain scalar walk.
  Generator gen(9);
  Tensor x = k::cast(randint(-3, 4, {3, 5, 37}, kCPU, &gen), kFloat32);
  std::vector<float> v = x.to_vector<float>();
  v[37 * 2 + 4] = std::nanf("");
  v[37 * 4 + 4] = std::nanf("");  // the first NaN along the dim wins
  v[37 * 1 + 5] = std::numeric_limits<float>::infinity();
  v[37 * 3 + 6] = -std::numeric_limits<float>::infinity();
  x = tensor(v, {3, 5, 37});
  for (ReduceOp op : {ReduceOp::Max, ReduceOp::Min}) {
    auto [values, indices] = k::arg_reduce(op, x, 1, false);
    const std::vector<float> got_v = values.to_vector<float>();
    const std::vector<int64_t> got_i = indices.to_vector<int64_t>();
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t j = 0; j < 37; ++j) {
        float best = v[b * 185 + j];
        int64_t best_i = 0;
        for (int64_t i = 1; i < 5; ++i) {
          const float e = v[b * 185 + i * 37 + j];
          const bool better = (op == ReduceOp::Max ? e > best : e < best) || (std::isnan(e) && !std::isnan(best));
          if (better) best = e, best_i = i;
        }
        INFO("op " << static_cast<int>(op) << " b " << b << " j " << j);
        CHECK(got_i[b * 37 + j] == best_i);
        CHECK((std::isnan(best) ? std::isnan(got_v[b * 37 + j]) : got_v[b * 37 + j] == best));
      }
  }
}

// ================================================================ matmul

namespace {

// Reference matmul of row-major arrays with NumPy semantics.
std::vector<double> ref_matmul(const std::vector<double>& a, Shape sa, const std::vector<double>& b, Shape sb,
                               Shape& out_shape) {
  const bool a1 = sa.size() == 1, b1 = sb.size() == 1;
  if (a1) sa.insert(sa.begin(), 1);
  if (b1) sb.push_back(1);
  const int64_t m = sa[sa.size() - 2], kk = sa.back(), n = sb.back();
  const Shape ba(sa.begin(), sa.end() - 2), bb(sb.begin(), sb.end() - 2);
  const Shape batch = broadcast_shapes("ref", ba, bb);
  Shape full = batch;
  full.push_back(m);
  full.push_back(n);
  std::vector<double> out(static_cast<size_t>(numel_of(full)), 0.0);
  for (int64_t i = 0; i < numel_of(full); ++i) {
    auto idx = unravel(i, full);
    std::vector<int64_t> ia(idx.begin(), idx.end() - 2), ib = ia;
    double acc = 0;
    for (int64_t p = 0; p < kk; ++p) {
      auto xa = ia, xb = ib;
      xa.push_back(idx[idx.size() - 2]);
      xa.push_back(p);
      xb.push_back(p);
      xb.push_back(idx.back());
      acc += bget(a, sa, xa) * bget(b, sb, xb);
    }
    out[i] = acc;
  }
  out_shape = batch;
  if (!a1) out_shape.push_back(m);
  if (!b1) out_shape.push_back(n);
  return out;
}

}  // namespace

TEST_CASE("matmul against a naive triple loop") {
  struct Case {
    Shape a, b;
  };
  const std::vector<Case> cases = {
      {{3, 4}, {4, 5}},          {{1, 1}, {1, 1}},         {{4}, {4, 3}},        {{3, 4}, {4}},
      {{4}, {4}},                {{2, 3, 4}, {4, 5}},      {{3, 4}, {2, 4, 5}},  {{2, 1, 3, 4}, {5, 4, 6}},
      {{2, 3, 4}, {2, 4, 5}},    {{7, 9}, {9, 17}},        {{70, 300}, {300, 33}}, {{5}, {2, 5, 3}},
      {{2, 2, 3}, {3}},          {{0, 4}, {4, 3}},         {{3, 0}, {0, 2}},     {{2, 0, 3, 4}, {4, 5}},
      {{65, 259}, {259, 530}},
  };
  for (const Case& c : cases) {
    for (DType dt : {kFloat32, kFloat64}) {
      CAPTURE(shape_str(c.a));
      CAPTURE(shape_str(c.b));
      CAPTURE(dt);
      const std::vector<double> va = test_values(numel_of(c.a), 21), vb = test_values(numel_of(c.b), 22);
      Shape want_shape;
      const std::vector<double> want = ref_matmul(va, c.a, vb, c.b, want_shape);
      const double tol = dt == kFloat32 ? 1e-4 : 1e-11;
      Tensor r = k::matmul(make(va, c.a, dt), make(vb, c.b, dt));
      CHECK(r.shape() == want_shape);
      CHECK(r.dtype() == dt);
      check_close(r.to_vector(), want, tol);
      check_close(k::matmul(strided_copy(va, c.a, dt), strided_copy(vb, c.b, dt)).to_vector(), want, tol);
    }
  }
}

TEST_CASE("matmul with transposed and broadcast operands") {
  const std::vector<double> va = test_values(12, 31), vb = test_values(20, 32);
  Shape s;
  const std::vector<double> want = ref_matmul(va, {3, 4}, vb, {4, 5}, s);
  // a given as the transpose of a [4,3] tensor, b as the transpose of a [5,4] tensor.
  std::vector<double> at(12), bt(20);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) at[j * 3 + i] = va[i * 4 + j];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 5; ++j) bt[j * 4 + i] = vb[i * 5 + j];
  Tensor a = transposed(make(at, {4, 3}));
  Tensor b = transposed(make(bt, {5, 4}));
  check_close(k::matmul(a, b).to_vector(), want, 1e-12);
  check_close(k::matmul(a, make(vb, {4, 5})).to_vector(), want, 1e-12);
  check_close(k::matmul(make(va, {3, 4}), b).to_vector(), want, 1e-12);

  // An expanded batch operand (stride 0) gives the same result in every batch.
  Tensor ab = k::expand_to("test", make(va, {3, 4}), {6, 3, 4});
  Tensor r = k::matmul(ab, make(vb, {4, 5}));
  CHECK(r.shape() == Shape{6, 3, 5});
  const std::vector<double> rv = r.to_vector();
  for (int bi = 0; bi < 6; ++bi)
    check_close(std::vector<double>(rv.begin() + bi * 15, rv.begin() + (bi + 1) * 15), want, 1e-12);

  // Batch dims that cannot be collapsed into one without a copy: [1,3] x [2,1] broadcast.
  const std::vector<double> xa = test_values(3 * 2 * 4, 33), xb = test_values(2 * 4 * 2, 34);
  Shape ws;
  const std::vector<double> w2 = ref_matmul(xa, {1, 3, 2, 4}, xb, {2, 1, 4, 2}, ws);
  Tensor r2 = k::matmul(make(xa, {1, 3, 2, 4}), make(xb, {2, 1, 4, 2}));
  CHECK(r2.shape() == Shape{2, 3, 2, 2});
  check_close(r2.to_vector(), w2, 1e-12);

  // Many small matrices (parallel over batch) and one larger one (parallel over row blocks).
  const std::vector<double> ma = test_values(64 * 5 * 16, 35), mb = test_values(64 * 16 * 7, 36);
  Shape s3;
  check_close(k::matmul(make(ma, {64, 5, 16}), make(mb, {64, 16, 7})).to_vector(),
              ref_matmul(ma, {64, 5, 16}, mb, {64, 16, 7}, s3), 1e-12);
}

TEST_CASE("matmul errors and edge cases") {
  CHECK_ERROR(k::matmul(zeros({3, 4}), zeros({5, 6})), "matmul: shapes [3,4] and [5,6] do not match (4 != 5)");
  CHECK_ERROR(k::matmul(zeros({3}), zeros({4})), "matmul: shapes [3] and [4] do not match (3 != 4)");
  CHECK_ERROR(k::matmul(scalar(1), zeros({3})), "matmul: both arguments must have at least 1 dim");
  CHECK_ERROR(k::matmul(zeros({2, 3, 4}), zeros({3, 4, 5})), "matmul: shapes [2] and [3] cannot be broadcast");
  CHECK_ERROR(k::matmul(zeros({2, 2}), zeros({2, 2}, kFloat64)), "matmul: dtypes float32 and float64 do not match");
  CHECK_ERROR(k::matmul(zeros({2, 2}, kInt64), zeros({2, 2}, kInt64)), "matmul: dtype int64 is not supported");
  Tensor z = k::matmul(zeros({3, 0}), zeros({0, 2}));
  CHECK(z.shape() == Shape{3, 2});
  CHECK(z.to_vector() == std::vector<double>(6, 0.0));
  CHECK(k::matmul(make({1, 2}, {2}), make({3, 4}, {2})).dim() == 0);
  CHECK(k::matmul(make({1, 2}, {2}), make({3, 4}, {2})).item() == 11);
}

// ================================================================ softmax

TEST_CASE("softmax and log_softmax along any dim") {
  const Shape shape{3, 4, 5};
  const std::vector<double> v = test_values(60, 41);
  for (int dim = -3; dim < 3; ++dim) {
    const int d = dim < 0 ? dim + 3 : dim;
    std::vector<double> want(60), want_log(60);
    for (int64_t i = 0; i < 60; ++i) {
      auto idx = unravel(i, shape);
      double mx = -INFINITY, sum = 0;
      for (int64_t j = 0; j < shape[d]; ++j) {
        idx[d] = j;
        mx = std::max(mx, v[ravel(idx, shape)]);
      }
      for (int64_t j = 0; j < shape[d]; ++j) {
        idx[d] = j;
        sum += std::exp(v[ravel(idx, shape)] - mx);
      }
      want[i] = std::exp(v[i] - mx) / sum;
      want_log[i] = v[i] - mx - std::log(sum);
    }
    for (DType dt : {kFloat32, kFloat64}) {
      CAPTURE(dim);
      CAPTURE(dt);
      const double tol = dt == kFloat32 ? 1e-5 : 1e-12;
      std::vector<double> vin = v;
      if (dt == kFloat32)
        for (auto& x : vin) x = static_cast<float>(x);
      check_close(k::softmax(make(vin, shape, dt), dim, false).to_vector(), want, tol);
      check_close(k::softmax(make(vin, shape, dt), dim, true).to_vector(), want_log, tol);
      check_close(k::softmax(strided_copy(vin, shape, dt), dim, false).to_vector(), want, tol);
      check_close(k::softmax(strided_copy(vin, shape, dt), dim, true).to_vector(), want_log, tol);
    }
  }
  // Stable for huge logits.
  check_close(k::softmax(make({1000, 1000, -1000}, {3}), 0, false).to_vector(), {0.5, 0.5, 0});
  check_close(k::softmax(make({1000, 1000}, {2}), 0, true).to_vector(), {-std::log(2.0), -std::log(2.0)});
  check_close(k::softmax(make({1, 2, 3}, {3}, kFloat32), 0, false).to_vector(),
              {0.09003057317, 0.2447284711, 0.6652409558}, 1e-6);
  CHECK(k::softmax(scalar(3.0), 0, false).item() == 1.0);
  CHECK(k::softmax(scalar(3.0), 0, true).item() == 0.0);
  CHECK(k::softmax(zeros({0, 4}), 1, false).shape() == Shape{0, 4});
  CHECK_ERROR(k::softmax(zeros({2}, kInt64), 0, false), "softmax: dtype int64 is not supported");
  CHECK_ERROR(k::softmax(zeros({2}), 1, true), "log_softmax: dim 1 is out of range");
  // Large: parallel over rows.
  Tensor big = make(test_values(2000 * 64, 7), {2000, 64});
  Tensor sums = k::reduce(ReduceOp::Sum, k::softmax(big, 1, false), {1}, false);
  for (double s : sums.to_vector()) CHECK(s == doctest::Approx(1.0).epsilon(1e-12));
}

// ================================================================ vectorised float32 math

namespace {

// Distance in units in the last place of want (as a float); subnormal results count in units of
// the smallest subnormal.
double ulp_error(float got, double want) {
  const float w = static_cast<float>(want);
  float ulp = std::nextafter(std::abs(w), std::numeric_limits<float>::infinity()) - std::abs(w);
  if (!(ulp > 0) || std::isinf(ulp)) ulp = std::numeric_limits<float>::denorm_min();
  return std::abs(static_cast<double>(got) - want) / static_cast<double>(ulp);
}

}  // namespace

TEST_CASE("float32 exp is within 2 ulp of std::exp over a dense sweep, special values exact") {
  // Every 64th float in [-110, 95] (about 30M values, one kernel call: the vectorised path),
  // plus every float in [-1, 1] at a stride of 1024.
  std::vector<float> xs;
  for (float x = -110.0f; x < 95.0f;) {
    xs.push_back(x);
    uint32_t bits = std::bit_cast<uint32_t>(x);
    bits = x < 0 ? (bits > 0x80000040u ? bits - 64 : 0u) : bits + 64;
    x = std::bit_cast<float>(bits);
  }
  for (uint32_t bits = 0; bits <= 0x3f800000u; bits += 1024) {
    xs.push_back(std::bit_cast<float>(bits));
    xs.push_back(-std::bit_cast<float>(bits));
  }
  const int64_t n = static_cast<int64_t>(xs.size());
  Tensor x = Tensor::empty({n}, kFloat32, kCPU);
  std::copy(xs.begin(), xs.end(), x.data_ptr<float>());
  const Tensor y = k::unary(UnaryOp::Exp, x);
  const float* got = y.data_ptr<float>();
  double worst = 0.0;
  float worst_at = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const double want = std::exp(static_cast<double>(xs[i]));
    if (want > std::numeric_limits<float>::max()) {
      if (static_cast<float>(want) == std::numeric_limits<float>::infinity()) CHECK(std::isinf(got[i]));
      continue;
    }
    const double e = ulp_error(got[i], want);
    if (e > worst) {
      worst = e;
      worst_at = xs[i];
    }
  }
  CAPTURE(worst_at);
  CHECK(worst <= 2.0);
  // In place, the same bits, also in the blocks that hold a lane outside the normal range and
  // are redone by the full-range exp.
  std::vector<float> in_place = xs;
  mg::cpu::vec::exp_f32(in_place.data(), in_place.data(), n);
  int64_t differ = 0;
  for (int64_t i = 0; i < n; ++i) differ += std::bit_cast<uint32_t>(in_place[i]) != std::bit_cast<uint32_t>(got[i]);
  CHECK(differ == 0);
  const float inf = std::numeric_limits<float>::infinity();
  Tensor special = Tensor::empty({8}, kFloat32, kCPU);
  const float in[8] = {-inf, inf, std::nanf(""), 0.0f, -0.0f, 89.0f, -104.0f, -1e30f};
  std::copy(in, in + 8, special.data_ptr<float>());
  const std::vector<double> e = k::unary(UnaryOp::Exp, special).to_vector();
  CHECK(e[0] == 0.0);
  CHECK(e[1] == inf);
  CHECK(std::isnan(e[2]));
  CHECK(e[3] == 1.0);
  CHECK(e[4] == 1.0);
  CHECK(e[5] == inf);
  CHECK(e[6] == 0.0);
  CHECK(e[7] == 0.0);
}

TEST_CASE("the two 16-lane types (one 64-byte vector, two 32-byte halves) give the same bits") {
  // Kernels run vf16 on AVX-512 machines and vf8x2 elsewhere; each machine's tests exercise only
  // its own, so the two are compared here lane by lane, and against the scalar exp.
  namespace v = mg::cpu::vec;
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> xs = {-inf, inf, std::nanf(""), 0.0f, -0.0f, 89.0f, -104.0f, -1e30f, 1e-40f, -87.5f};
  for (int i = 0; xs.size() < 16 * 64 + 7; ++i) xs.push_back(-120.0f + 0.2137f * static_cast<float>(i));
  const auto bits = [](float f) { return std::bit_cast<uint32_t>(f); };
  int64_t mismatches = 0;
  for (size_t i = 0; i + 16 <= xs.size(); i += 16) {
    const float* p = xs.data() + i;
    float wide[16], halves[16];
    v::store16(wide, v::exp16<v::vf16>(v::load16<v::vf16>(p)));
    v::store16(halves, v::exp16<v::vf8x2>(v::load16<v::vf8x2>(p)));
    for (int j = 0; j < 16; ++j) {
      const float scalar = v::exp_f32(p[j]);
      if (bits(wide[j]) != bits(halves[j]) || bits(wide[j]) != bits(scalar)) ++mismatches;
    }
    const v::vf16 w = v::load16<v::vf16>(p) * 3.0f - 1.0f;
    const v::vf8x2 h = v::load16<v::vf8x2>(p) * 3.0f - 1.0f;
    CHECK(bits(v::hmax16(w)) == bits(v::hmax16(h)));
    CHECK(std::bit_cast<uint64_t>(v::hsum16(w)) == std::bit_cast<uint64_t>(v::hsum16(h)));  // NaN in one block
    float selected_w[16], selected_h[16];
    v::store16(selected_w, v::max16(w, v::splat16<v::vf16>(0.5f)));
    v::store16(selected_h, v::max16(h, v::splat16<v::vf8x2>(0.5f)));
    for (int j = 0; j < 16; ++j) CHECK(bits(selected_w[j]) == bits(selected_h[j]));
  }
  CHECK(mismatches == 0);
  // A long sum (several blocks and a scalar tail) in both lane types.
  std::vector<float> long_row(3 * mg::cpu::kBlockedSumBlock + 21);
  for (size_t i = 0; i < long_row.size(); ++i) long_row[i] = std::sin(static_cast<float>(i)) * 1e3f;
  const float* row = long_row.data();
  const auto scalar = [&](int64_t i) { return row[i]; };
  const double sum_wide = mg::cpu::blocked_sum(
      static_cast<int64_t>(long_row.size()), [&](int64_t i) { return v::load16<v::vf16>(row + i); }, scalar);
  const double sum_halves = mg::cpu::blocked_sum(
      static_cast<int64_t>(long_row.size()), [&](int64_t i) { return v::load16<v::vf8x2>(row + i); }, scalar);
  CHECK(sum_wide == sum_halves);
  double want = 0.0;
  for (float f : long_row) want += f;
  CHECK(std::abs(sum_wide - want) <= 1e-3 * std::abs(want) + 1.0);
}

TEST_CASE("float32 log is within 1 ulp over a sweep of the positive floats, special values exact") {
  // Every 1021st positive float, subnormals included, and every 31st in [0.5, 2), where the
  // polynomial covers the whole reduced range. One kernel call over the sweep (the vectorised
  // path, in place too) and the scalar form.
  std::vector<float> xs;
  for (uint32_t bits = 1; bits < 0x7f800000u; bits += 1021) xs.push_back(std::bit_cast<float>(bits));
  for (uint32_t bits = std::bit_cast<uint32_t>(0.5f); bits < std::bit_cast<uint32_t>(2.0f); bits += 31)
    xs.push_back(std::bit_cast<float>(bits));
  const int64_t n = static_cast<int64_t>(xs.size());
  Tensor x = Tensor::empty({n}, kFloat32, kCPU);
  std::copy(xs.begin(), xs.end(), x.data_ptr<float>());
  const Tensor y = k::unary(UnaryOp::Log, x);
  const float* got = y.data_ptr<float>();
  std::vector<float> in_place = xs;
  mg::cpu::vec::log_f32(in_place.data(), in_place.data(), n);
  double worst = 0.0, worst_scalar = 0.0;
  float worst_at = 0.0f;
  int64_t differ = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double want = std::log(static_cast<double>(xs[i]));
    const double e = ulp_error(got[i], want);
    if (e > worst) {
      worst = e;
      worst_at = xs[i];
    }
    worst_scalar = std::max(worst_scalar, ulp_error(mg::cpu::vec::log_f32(xs[i]), want));
    differ += std::bit_cast<uint32_t>(in_place[i]) != std::bit_cast<uint32_t>(got[i]);
  }
  CAPTURE(worst_at);
  CHECK(worst <= 1.0);
  CHECK(worst_scalar <= 1.0);
  CHECK(differ == 0);
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> special = {0.0f, -0.0f, inf, -inf, -1.0f, -1e-40f, std::nanf(""), 1.0f};
  Tensor s = Tensor::empty({8}, kFloat32, kCPU);
  std::copy(special.begin(), special.end(), s.data_ptr<float>());
  const std::vector<double> out = k::unary(UnaryOp::Log, s).to_vector();
  CHECK(out[0] == -inf);
  CHECK(out[1] == -inf);
  CHECK(out[2] == inf);
  for (int i = 3; i < 7; ++i) CHECK(std::isnan(out[i]));
  CHECK(out[7] == 0.0);
}

TEST_CASE("float32 erf and softplus: vectorised and strided paths agree with float64") {
  // [-30, 30] densely, and small magnitudes down to 1e-30 of both signs (erf's relative accuracy
  // near 0, softplus's exp tail is covered by the range).
  std::vector<double> v;
  for (int i = 0; i < 20011; ++i) v.push_back(static_cast<float>(-30.0 + 60.0 * i / 20011.0));
  for (double m = 1e-30; m < 2.0; m *= 1.37) {
    v.push_back(static_cast<float>(m));
    v.push_back(static_cast<float>(-m));
  }
  const int64_t n = static_cast<int64_t>(v.size());
  for (UnaryOp op : {UnaryOp::Erf, UnaryOp::Softplus}) {
    CAPTURE(unary_op_name(op));
    const std::vector<double> dense = k::unary(op, make(v, {n}, kFloat32)).to_vector();
    const std::vector<double> strided = k::unary(op, strided_copy(v, {n}, kFloat32)).to_vector();
    const std::vector<double> ref = k::unary(op, make(v, {n}, kFloat64)).to_vector();
    double worst = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      CAPTURE(v[i]);
      worst = std::max(worst, std::abs(dense[i] - ref[i]) / std::abs(ref[i]));
      CHECK(std::abs(dense[i] - ref[i]) <= 3e-7 * std::abs(ref[i]));
      CHECK(std::abs(strided[i] - dense[i]) <= 3e-7 * std::abs(dense[i]));
    }
    MESSAGE("worst relative error ", worst);
  }
  const float inf = std::numeric_limits<float>::infinity();
  Tensor s = Tensor::empty({4}, kFloat32, kCPU);
  const float in[4] = {inf, -inf, std::nanf(""), 0.0f};
  std::copy(in, in + 4, s.data_ptr<float>());
  const std::vector<double> e = k::unary(UnaryOp::Erf, s).to_vector();
  CHECK(e[0] == 1.0);
  CHECK(e[1] == -1.0);
  CHECK(std::isnan(e[2]));
  CHECK(e[3] == 0.0);
  const std::vector<double> sp = k::unary(UnaryOp::Softplus, s).to_vector();
  CHECK(sp[0] == inf);
  CHECK(sp[1] == 0.0);
  CHECK(std::isnan(sp[2]));
  CHECK(sp[3] == doctest::Approx(std::log(2.0)).epsilon(1e-7));
}

TEST_CASE("float32 sin, cos and tanh are within 2.5 ulp of float64 over sweeps; sin and cos past their bound") {
  // Every 1021st float of either sign up to kSinCosBound (sin and cos) and up to 20 (tanh, which
  // is +-1 from 10 on), through the dense kernel and the strided (scalar) path.
  namespace v = mg::cpu::vec;
  struct Case {
    UnaryOp op;
    float limit;
    double max_ulp;
    double (*reference)(double);
  };
  const Case cases[] = {{UnaryOp::Sin, v::kSinCosBound, 2.5, [](double t) { return std::sin(t); }},
                        {UnaryOp::Cos, v::kSinCosBound, 2.5, [](double t) { return std::cos(t); }},
                        {UnaryOp::Tanh, 20.0f, 1.5, [](double t) { return std::tanh(t); }}};
  for (const Case& c : cases) {
    CAPTURE(unary_op_name(c.op));
    std::vector<double> xs;
    for (uint32_t bits = 0; bits <= std::bit_cast<uint32_t>(c.limit); bits += 1021) {
      xs.push_back(std::bit_cast<float>(bits));
      xs.push_back(-std::bit_cast<float>(bits));
    }
    const int64_t n = static_cast<int64_t>(xs.size());
    const std::vector<double> dense = k::unary(c.op, make(xs, {n}, kFloat32)).to_vector();
    const std::vector<double> strided = k::unary(c.op, strided_copy(xs, {n}, kFloat32)).to_vector();
    double worst = 0.0, worst_strided = 0.0;
    double worst_at = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const double want = c.reference(xs[i]);
      const double e = ulp_error(static_cast<float>(dense[i]), want);
      if (e > worst) {
        worst = e;
        worst_at = xs[i];
      }
      worst_strided = std::max(worst_strided, ulp_error(static_cast<float>(strided[i]), want));
    }
    CAPTURE(worst_at);
    CHECK(worst <= c.max_ulp);
    CHECK(worst_strided <= c.max_ulp);
  }
  // Zeros keep their sign in sin and tanh; tanh saturates; NaN stays NaN.
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> special = {-0.0f, 0.0f, inf, -inf, std::nanf(""), 1e-40f, -30.0f, 1e30f};
  std::vector<float> out(special.size());
  v::tanh_f32(special.data(), out.data(), static_cast<int64_t>(special.size()));
  CHECK(std::signbit(out[0]));
  CHECK(out[1] == 0.0f);
  CHECK(!std::signbit(out[1]));
  CHECK(out[2] == 1.0f);
  CHECK(out[3] == -1.0f);
  CHECK(std::isnan(out[4]));
  CHECK(out[5] == 1e-40f);
  CHECK(out[6] == -1.0f);
  CHECK(out[7] == 1.0f);
  v::sin_f32(special.data(), out.data(), 2);
  CHECK(std::signbit(out[0]));
  CHECK(!std::signbit(out[1]));
  // A block of 256 with one lane past the bound, infinite or NaN is computed by the C library,
  // lane for lane; the next block, within the bound, keeps the reduced form's accuracy.
  for (float past : {v::kSinCosBound * 1.5f, 1e30f, inf, std::nanf("")}) {
    CAPTURE(past);
    std::vector<float> x(512), s(512), co(512);
    for (size_t i = 0; i < x.size(); ++i) x[i] = -40.0f + 0.37f * static_cast<float>(i);
    x[100] = past;
    v::sin_f32(x.data(), s.data(), 512);
    v::cos_f32(x.data(), co.data(), 512);
    int64_t differ = 0;
    for (size_t i = 0; i < 256; ++i) {
      differ += std::bit_cast<uint32_t>(s[i]) != std::bit_cast<uint32_t>(std::sin(x[i]));
      differ += std::bit_cast<uint32_t>(co[i]) != std::bit_cast<uint32_t>(std::cos(x[i]));
    }
    CHECK(differ == 0);
    for (size_t i = 256; i < 512; ++i) {
      CHECK(ulp_error(s[i], std::sin(static_cast<double>(x[i]))) <= 2.5);
      CHECK(ulp_error(co[i], std::cos(static_cast<double>(x[i]))) <= 2.5);
    }
    // In place: the same bits.
    std::vector<float> in_place = x;
    v::sin_f32(in_place.data(), in_place.data(), 512);
    CHECK(std::memcmp(in_place.data(), s.data(), sizeof(float) * 512) == 0);
  }
}

TEST_CASE("float32 sign: -1, 0 or 1, +0 for either zero, NaN stays NaN, dense and strided alike") {
  const float inf = std::numeric_limits<float>::infinity();
  const float in[8] = {-2.5f, -0.0f, 0.0f, 1e-40f, -1e-40f, inf, -inf, std::nanf("")};
  const float want[8] = {-1.0f, 0.0f, 0.0f, 1.0f, -1.0f, 1.0f, -1.0f, 0.0f};
  // 5 x 8 values: whole vectors and a tail.
  std::vector<double> xs;
  for (int r = 0; r < 5; ++r) xs.insert(xs.end(), in, in + 8);
  const int64_t n = static_cast<int64_t>(xs.size());
  for (const Tensor& x : {make(xs, {n}, kFloat32), strided_copy(xs, {n}, kFloat32)}) {
    const Tensor y = k::unary(UnaryOp::Sign, x);
    for (int64_t i = 0; i < n; ++i) {
      const float got = y.data_ptr<float>()[i];
      CAPTURE(xs[i]);
      if (i % 8 == 7) {
        CHECK(std::isnan(got));
      } else {
        CHECK(std::bit_cast<uint32_t>(got) == std::bit_cast<uint32_t>(want[i % 8]));
      }
    }
  }
}

TEST_CASE("float32 exp16_normal: exp16's bits wherever exp is a normal float, every other lane flagged") {
  namespace v = mg::cpu::vec;
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> xs = {-inf,   std::nanf(""), -std::nanf(""), 0.0f,   -0.0f,   -86.0f,  -86.5f,  -86.49f, -86.51f,
                           -86.7f, -87.5f,        -103.9f,        -1e30f, -104.5f, -150.0f, -200.0f, -1e10f};
  for (int i = 0; xs.size() < 16 * 40; ++i) xs.push_back(-95.0f + 0.1513f * static_cast<float>(i));
  const auto bits = [](float f) { return std::bit_cast<uint32_t>(f); };
  const auto check_lanes = [&]<typename V>(const float* p) {
    v::int_lanes<V> outside{};
    float normal[16], exact[16];
    v::store16(normal, v::exp16_normal<V>(v::load16<V>(p), outside));
    v::store16(exact, v::exp16<V, true>(v::load16<V>(p)));
    int32_t flags[16];
    std::memcpy(flags, &outside, sizeof(flags));
    for (int j = 0; j < 16; ++j) {
      CAPTURE(p[j]);
      CHECK(bits(exact[j]) == bits(v::exp_f32<true>(p[j])));
      if (flags[j] == 0) {
        CHECK(bits(normal[j]) == bits(exact[j]));
        CHECK(exact[j] >= std::numeric_limits<float>::min());
      } else {
        // Flagged only below kExpNormalFloor (a result below 2^-124) or for NaN.
        CHECK((std::isnan(p[j]) || exact[j] < 4.0f * std::numeric_limits<float>::min()));
      }
      if (std::isnan(p[j]) || exact[j] < std::numeric_limits<float>::min()) CHECK(flags[j] != 0);
    }
    CHECK(v::any16(outside) == std::any_of(flags, flags + 16, [](int32_t f) { return f != 0; }));
  };
  for (size_t i = 0; i + 16 <= xs.size(); i += 16) {
    check_lanes.operator()<v::vf16>(xs.data() + i);
    check_lanes.operator()<v::vf8x2>(xs.data() + i);
  }
}

TEST_CASE("float32 exp16_normal of either sign: exp16's bits for |x| <= 86.5, every other lane flagged") {
  namespace v = mg::cpu::vec;
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> xs = {inf,    -inf,  std::nanf(""), 0.0f,  -0.0f, 86.5f,  86.49f, 86.51f,
                           -86.5f, 88.0f, 88.7f,         89.0f, 1e30f, -1e30f, 100.0f, -100.0f};
  for (int i = 0; xs.size() < 16 * 80; ++i) xs.push_back(-95.0f + 0.1513f * static_cast<float>(i));
  const auto bits = [](float f) { return std::bit_cast<uint32_t>(f); };
  const auto check_lanes = [&]<typename V>(const float* p) {
    v::int_lanes<V> outside{};
    float normal[16], exact[16];
    v::store16(normal, v::exp16_normal<V, false>(v::load16<V>(p), outside));
    v::store16(exact, v::exp16<V>(v::load16<V>(p)));
    int32_t flags[16];
    std::memcpy(flags, &outside, sizeof(flags));
    for (int j = 0; j < 16; ++j) {
      CAPTURE(p[j]);
      CHECK(bits(exact[j]) == bits(v::exp_f32(p[j])));
      CHECK((flags[j] != 0) == !(std::abs(p[j]) <= v::kExpNormalBound));
      if (flags[j] == 0) CHECK(bits(normal[j]) == bits(exact[j]));
    }
  };
  for (size_t i = 0; i + 16 <= xs.size(); i += 16) {
    check_lanes.operator()<v::vf16>(xs.data() + i);
    check_lanes.operator()<v::vf8x2>(xs.data() + i);
  }
}

TEST_CASE(
    "float32 sigmoid, gelu_tanh, gelu_erf and softplus arrays: exp arguments outside the normal range, in place") {
  // Blocks whose exp argument passes |x| = 86.5 (sigmoid and softplus beyond it, gelu_tanh from x = -10,
  // gelu_erf beyond |x| = kGeluErfNormalBound) go through the full-range exp; in place gives the
  // same bits.
  namespace v = mg::cpu::vec;
  const int64_t n = 5003;
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(-120.0 + 240.0 * static_cast<double>(i) / (n - 1));
  const auto sigmoid = [](double t) { return 1.0 / (1.0 + std::exp(-t)); };
  const auto gelu_tanh = [](double t) {
    return t / (1.0 + std::exp(-2.0 * 0.7978845608028654 * (t + 0.044715 * t * t * t)));
  };
  struct Case {
    const char* name;
    void (*array)(const float*, float*, int64_t);
    double (*reference)(double);
  };
  const auto gelu_erf = [](double t) { return 0.5 * t * std::erfc(-t / std::sqrt(2.0)); };
  const auto softplus = [](double t) { return std::max(t, 0.0) + std::log1p(std::exp(-std::abs(t))); };
  const Case cases[] = {{"sigmoid", &v::sigmoid_f32, +sigmoid},
                        {"gelu_tanh", &v::gelu_tanh_f32, +gelu_tanh},
                        {"gelu_erf", &v::gelu_erf_f32, +gelu_erf},
                        {"softplus", &v::softplus_f32, +softplus}};
  for (const Case& c : cases) {
    CAPTURE(c.name);
    std::vector<float> y(x.size()), in_place = x;
    c.array(x.data(), y.data(), n);
    c.array(in_place.data(), in_place.data(), n);
    int64_t differ = 0, wrong = 0;
    for (int64_t i = 0; i < n; ++i) {
      differ += std::bit_cast<uint32_t>(in_place[i]) != std::bit_cast<uint32_t>(y[i]);
      const double want = c.reference(x[i]);
      // As in the test below: gelu_tanh's exponent amplifies float rounding by about x^2.
      const double rtol = 5e-7 * (1.0 + static_cast<double>(x[i]) * x[i]);
      wrong += !(std::abs(y[i] - want) <= rtol * std::abs(want) + 1e-37);
    }
    CHECK(differ == 0);
    CHECK(wrong == 0);
  }
}

TEST_CASE("float32 gelu_erf: blocks within kGeluErfNormalBound keep exp in its normal range; inf and NaN") {
  namespace v = mg::cpu::vec;
  // The bound lets a block skip the range check of every exp: the exponent must not fall below
  // kExpNormalFloor for any |x| up to it.
  float lowest = 0.0f;
  for (float x = 0.0f; x <= v::kGeluErfNormalBound; x = std::nextafter(x + 1e-4f, 100.0f)) {
    float half_t;
    lowest = std::min(lowest, v::gelu_erf_exponent(x, half_t));
  }
  CHECK(lowest >= v::kExpNormalFloor);
  // A NaN or infinite x in a block of ordinary values: only its own lane is affected.
  const float inf = std::numeric_limits<float>::infinity();
  for (float special : {std::nanf(""), inf, -inf}) {
    CAPTURE(special);
    std::vector<float> x(64), y(64);
    for (size_t i = 0; i < x.size(); ++i) x[i] = -3.0f + 0.1f * static_cast<float>(i);
    x[21] = special;
    v::gelu_erf_f32(x.data(), y.data(), 64);
    // +inf -> inf as x Phi(x); -inf and NaN -> NaN, as the float64 formula 0.5 x (1 + erf(x / sqrt 2)).
    if (special == inf) {
      CHECK(y[21] == inf);
    } else {
      CHECK(std::isnan(y[21]));
    }
    for (size_t i = 0; i < x.size(); ++i) {
      if (i == 21) continue;
      const double want = 0.5 * x[i] * std::erfc(-x[i] / std::sqrt(2.0));
      CHECK(std::abs(y[i] - want) <= 5e-7 * (1.0 + x[i] * x[i]) * std::abs(want) + 1e-37);
    }
  }
}

TEST_CASE("float32 sigmoid, tanh, gelu_tanh and gelu_erf: vectorised and strided paths agree with float64") {
  const int64_t n = 20011;  // not a multiple of any vector width
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(-30.0 + 60.0 * static_cast<double>(i) / n);
  for (UnaryOp op : {UnaryOp::Exp, UnaryOp::Sigmoid, UnaryOp::Tanh, UnaryOp::GeluTanh, UnaryOp::GeluErf}) {
    CAPTURE(unary_op_name(op));
    // The GELUs' tails exp(-2u(x)) and exp(-x^2 / 2) amplify the float rounding of their
    // exponent (relative error ~ 1e-7 x^2 for negative x), in float32 whatever the formula;
    // gelu_erf's erfc fit adds 1.2e-7.
    const bool gelu = op == UnaryOp::GeluErf || op == UnaryOp::GeluTanh;
    const std::vector<double> dense = k::unary(op, make(v, {n}, kFloat32)).to_vector();
    const std::vector<double> strided = k::unary(op, strided_copy(v, {n}, kFloat32)).to_vector();
    const std::vector<double> ref = k::unary(op, make(v, {n}, kFloat64)).to_vector();
    for (int64_t i = 0; i < n; ++i) {
      CAPTURE(v[i]);
      // Relative to the float64 value, with an absolute floor for results near 0 (where the
      // float64 reference of gelu_tanh itself cancels). The vectorised loop may use FMA.
      const double rtol = gelu ? 5e-7 * (1.0 + v[i] * v[i]) : 3e-7;
      CHECK(std::abs(dense[i] - ref[i]) <= rtol * std::abs(ref[i]) + 1e-14);
      // Between the two paths too, since only the vectorised one may contract into FMA.
      CHECK(std::abs(strided[i] - dense[i]) <= std::max(rtol, 5e-7) * std::abs(dense[i]) + 1e-37);
    }
  }
}

TEST_CASE("fused float32 softmax rows: lengths around the vector width, -inf, long rows") {
  for (int64_t len : {1, 3, 15, 16, 17, 33, 1000, 5000}) {
    CAPTURE(len);
    const int64_t rows = 7;
    std::vector<double> v = test_values(rows * len, static_cast<uint32_t>(len));
    for (auto& x : v) x = static_cast<float>(x * 10.0);
    if (len > 2) v[1] = -INFINITY;
    const Tensor x32 = make(v, {rows, len}, kFloat32), x64 = make(v, {rows, len}, kFloat64);
    for (bool log : {false, true}) {
      CAPTURE(log);
      const std::vector<double> got = k::softmax(x32, 1, log).to_vector();
      const std::vector<double> want = k::softmax(x64, 1, log).to_vector();
      for (size_t i = 0; i < got.size(); ++i) {
        if (std::isinf(want[i])) {
          CHECK(got[i] == want[i]);
          continue;
        }
        CHECK(std::abs(got[i] - want[i]) <= 2e-6 * std::max(1.0, std::abs(want[i])));
      }
    }
  }
  // Terms whose exp is subnormal (x - max in [-104, -87]) are exact to a few subnormal ulps, and a
  // row with them sends the rows after it to the exact exp (softmax_rows.h): the rows they share
  // with a call without that row come out with the same bits either way.
  const int64_t len = 40;
  std::vector<double> rows_v;
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t i = 0; i < len; ++i)
      rows_v.push_back(static_cast<float>(r == 0 ? -104.0 + 0.45 * static_cast<double>(i)
                                                 : std::sin(static_cast<double>(r * len + i)) * 8.0));
  rows_v[len - 1] = 0.0;  // row 0's max: its other terms lie in [-104, -86.5]
  for (bool log : {false, true}) {
    CAPTURE(log);
    const std::vector<double> got = k::softmax(make(rows_v, {6, len}, kFloat32), 1, log).to_vector();
    const std::vector<double> want = k::softmax(make(rows_v, {6, len}, kFloat64), 1, log).to_vector();
    for (size_t i = 0; i < got.size(); ++i)
      CHECK(std::abs(got[i] - want[i]) <= 2e-6 * std::abs(want[i]) + (log ? 0.0 : 1e-44));
    const std::vector<double> tail_rows(rows_v.begin() + len, rows_v.end());
    const std::vector<double> alone = k::softmax(make(tail_rows, {5, len}, kFloat32), 1, log).to_vector();
    for (size_t i = 0; i < alone.size(); ++i) CHECK(alone[i] == got[i + len]);
  }
  // NaN in a row gives NaN across it, on either exp.
  for (double at : {0.0, 3.0}) {
    std::vector<double> row(17, 1.0);
    row[static_cast<size_t>(at)] = NAN;
    for (double y : k::softmax(make(row, {17}, kFloat32), 0, false).to_vector()) CHECK(std::isnan(y));
  }
  // A row of -inf only gives NaN (0 / 0), as before; a transposed input takes the strided path.
  CHECK(std::isnan(k::softmax(make({-INFINITY, -INFINITY}, {2}, kFloat32), 0, false).to_vector()[0]));
  const std::vector<double> v = test_values(12, 5);
  check_close(k::softmax(transposed(make(v, {4, 3}, kFloat32)), 1, false).to_vector(),
              k::softmax(transposed(make(v, {4, 3})), 1, false).to_vector(), 1e-6);
}

TEST_CASE("softmax_backward against its formula, every dim, contiguous and strided, float32 and float64") {
  const Shape shape{3, 5, 37};
  const std::vector<double> xv = test_values(3 * 5 * 37, 12), gv = test_values(3 * 5 * 37, 13);
  for (int dim = 0; dim < 3; ++dim) {
    for (bool log : {false, true}) {
      const Tensor y64 = k::softmax(make(xv, shape), dim, log), g64 = make(gv, shape);
      // The formula in float64: y (g - sum(g y)) or g - exp(y) sum(g).
      const Tensor s = k::reduce(ReduceOp::Sum, log ? g64 : k::binary(BinaryOp::Mul, g64, y64), {dim}, true);
      const std::vector<double> want =
          log ? k::binary(BinaryOp::Sub, g64, k::binary(BinaryOp::Mul, k::unary(UnaryOp::Exp, y64), s)).to_vector()
              : k::binary(BinaryOp::Mul, y64, k::binary(BinaryOp::Sub, g64, s)).to_vector();
      for (DType dt : {kFloat32, kFloat64}) {
        CAPTURE(dim);
        CAPTURE(log);
        CAPTURE(dt);
        const double tol = dt == kFloat32 ? 2e-6 : 1e-13;
        const Tensor y = k::cast(y64, dt), g = k::cast(g64, dt);
        check_close(k::softmax_backward(y, g, dim, log).to_vector(), want, tol);
        const std::vector<double> yv = y.to_vector();
        check_close(k::softmax_backward(strided_copy(yv, shape, dt), strided_copy(gv, shape, dt), dim, log).to_vector(),
                    want, tol);
      }
    }
  }
  // A broadcast gradient (stride 0), as the backward of a sum gives: the strided loop against the
  // vectorised one, within 2 ulp (the vectorised one may contract g - exp(y) s into an FMA).
  const Tensor y = k::softmax(make(xv, shape, kFloat32), 2, true);
  const Tensor ones_g = k::expand_to("test", make({1.0}, {}, kFloat32), shape);
  check_close(k::softmax_backward(y, ones_g, 2, true).to_vector(),
              k::softmax_backward(y, k::contiguous(ones_g), 2, true).to_vector(), 2.4e-7);
  CHECK_ERROR(k::softmax_backward(y, zeros({3}), 0, true), "log_softmax_backward: grad of shape [3] does not match");
  CHECK_ERROR(k::softmax_backward(y, k::cast(y, kFloat64), 0, false), "softmax_backward");
  CHECK_ERROR(k::softmax_backward(y, y, 3, false), "softmax_backward: dim 3 is out of range");
}

TEST_CASE("layer_norm kernel against a float64 reference, with and without affine parameters") {
  for (DType dt : {kFloat32, kFloat64}) {
    for (int64_t cols : {1, 5, 16, 37, 300}) {
      CAPTURE(dt);
      CAPTURE(cols);
      const int64_t rows = 6;
      const std::vector<double> v = test_values(rows * cols, 3), wv = test_values(cols, 4), bv = test_values(cols, 5);
      std::vector<double> xin = v;
      for (auto& x : xin) x = 3.0 + 2.0 * x;
      const Tensor x = make(xin, {2, 3, cols}, dt), w = make(wv, {cols}, dt), b = make(bv, {cols}, dt);
      for (int affine = 0; affine < 4; ++affine) {
        const Tensor wt = affine & 1 ? w : Tensor(), bt = affine & 2 ? b : Tensor();
        const k::LayerNormResult r = k::layer_norm(x, 1, wt, bt, 1e-5);
        CHECK(r.out.shape() == x.shape());
        CHECK(r.mean.shape() == Shape{2, 3, 1});
        const std::vector<double> out = r.out.to_vector(), mean = r.mean.to_vector(), rstd = r.rstd.to_vector();
        const std::vector<double> xr = x.to_vector(), wr = w.to_vector(), br = b.to_vector();
        for (int64_t row = 0; row < rows; ++row) {
          double mu = 0, var = 0;
          for (int64_t c = 0; c < cols; ++c) mu += xr[row * cols + c];
          mu /= cols;
          for (int64_t c = 0; c < cols; ++c) var += (xr[row * cols + c] - mu) * (xr[row * cols + c] - mu);
          const double rs = 1.0 / std::sqrt(var / cols + 1e-5);
          const double tol = dt == kFloat32 ? 2e-5 : 1e-12;
          CHECK(mean[row] == doctest::Approx(mu).epsilon(tol));
          CHECK(rstd[row] == doctest::Approx(rs).epsilon(tol));
          for (int64_t c = 0; c < cols; ++c) {
            double y = (xr[row * cols + c] - mu) * rs;
            if (affine & 1) y *= wr[c];
            if (affine & 2) y += br[c];
            CHECK(std::abs(out[row * cols + c] - y) <= tol * std::max(1.0, std::abs(y)));
          }
        }
      }
    }
  }
  // Normalising the last two dims; a transposed input is made contiguous first.
  const std::vector<double> v = test_values(24, 8);
  const k::LayerNormResult two = k::layer_norm(make(v, {2, 3, 4}), 2, Tensor(), Tensor(), 0.0);
  CHECK(two.mean.shape() == Shape{2, 1, 1});
  const k::LayerNormResult t = k::layer_norm(transposed(make(v, {6, 4})), 1, Tensor(), Tensor(), 1e-5);
  const k::LayerNormResult c = k::layer_norm(k::contiguous(transposed(make(v, {6, 4}))), 1, Tensor(), Tensor(), 1e-5);
  CHECK(t.out.to_vector() == c.out.to_vector());
  CHECK(k::layer_norm(zeros({0, 4}), 1, Tensor(), Tensor(), 1e-5).out.shape() == Shape{0, 4});
  CHECK_ERROR(k::layer_norm(zeros({3}, kInt64), 1, Tensor(), Tensor(), 1e-5), "layer_norm: dtype int64");
  CHECK_ERROR(k::layer_norm(zeros({3}), 2, Tensor(), Tensor(), 1e-5), "layer_norm: cannot normalise the last 2 dims");
  CHECK_ERROR(k::layer_norm(zeros({2, 3}), 1, zeros({2}), Tensor(), 1e-5),
              "layer_norm: weight of shape [2] does not match normalized shape [3]");
  CHECK_ERROR(k::layer_norm(zeros({2, 3}), 1, Tensor(), zeros({3}, kFloat64), 1e-5), "layer_norm");
  CHECK_ERROR(k::layer_norm(zeros({2, 3}), 1, Tensor(), Tensor(), -1.0), "layer_norm: eps must be >= 0");
}

TEST_CASE("adam_step kernel errors") {
  const Tensor p = zeros({3}), g = zeros({3});
  const Backend::AdamStep step{0.9, 0.999, 1e-8, 0.0, 1.0, 1.0, 1e-3, false, true, false};
  CHECK_ERROR(k::adam_step(p, g, zeros({3}), zeros({3}), Tensor(), step), "adam_step: max_exp_avg_sq");
  CHECK_ERROR(k::adam_step(p, zeros({4}), zeros({3}), zeros({3}), zeros({3}), step),
              "adam_step: grad of shape [4] does not match param of shape [3]");
  CHECK_ERROR(k::adam_step(p, g, zeros({3}, kFloat64), zeros({3}), zeros({3}), step), "adam_step");
  CHECK_ERROR(k::adam_step(transposed(zeros({2, 3})), zeros({3, 2}), zeros({3, 2}), zeros({3, 2}), zeros({3, 2}), step),
              "adam_step: param must be contiguous");
  CHECK_ERROR(k::adam_step(zeros({3}, kInt64), zeros({3}, kInt64), zeros({3}, kInt64), zeros({3}, kInt64), Tensor(),
                           Backend::AdamStep{0.9, 0.999, 1e-8, 0.0, 1.0, 1.0, 1e-3, false, false, false}),
              "adam_step: dtype int64 is not supported");
}

// ================================================================ indexing

TEST_CASE("index_select") {
  Tensor x = make(iota_values(12), {3, 4});
  Tensor idx = make({2, 0, 2}, {3}, kInt64);
  CHECK(k::index_select(x, 0, idx).to_vector() == std::vector<double>{8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11});
  Tensor c = k::index_select(x, 1, make({3, 1}, {2}, kInt64));
  CHECK(c.shape() == Shape{3, 2});
  CHECK(c.to_vector() == std::vector<double>{3, 1, 7, 5, 11, 9});
  CHECK(k::index_select(transposed(x), -1, make({1}, {1}, kInt64)).to_vector() == std::vector<double>{4, 5, 6, 7});
  // Strided index.
  Tensor wide = make({1, -5, 0, -5}, {4}, kInt64);
  Tensor sidx = k::as_strided(wide, {2}, {2}, 0);
  CHECK(k::index_select(x, 0, sidx).to_vector() == std::vector<double>{4, 5, 6, 7, 0, 1, 2, 3});
  CHECK(k::index_select(x, 0, make({}, {0}, kInt64)).shape() == Shape{0, 4});
  CHECK(k::index_select(make({1, 2, 3}, {3}, kInt64), 0, scalar(2, kInt64)).to_vector() == std::vector<double>{3});
  // Embedding-sized: many rows (parallel).
  const int64_t rows = 1000, dim = 64;
  Tensor table = make(test_values(rows * dim, 3), {rows, dim});
  std::vector<double> ids(5000);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<double>((i * 7919) % rows);
  Tensor emb = k::index_select(table, 0, make(ids, {5000}, kInt64));
  const std::vector<double> tv = table.to_vector(), ev = emb.to_vector();
  bool ok = true;
  for (size_t i = 0; i < ids.size(); ++i)
    for (int64_t j = 0; j < dim; ++j) ok = ok && ev[i * dim + j] == tv[static_cast<size_t>(ids[i]) * dim + j];
  CHECK(ok);

  CHECK_ERROR(k::index_select(make(iota_values(5), {5}), 0, make({7}, {1}, kInt64)),
              "index_select: index 7 is out of range for dim 0 of size 5");
  CHECK_ERROR(k::index_select(x, 0, make({-1}, {1}, kInt64)), "index_select: index -1 is out of range");
  CHECK_ERROR(k::index_select(x, 0, make({1}, {1}, kFloat32)), "index_select: index must be int64, got float32");
  CHECK_ERROR(k::index_select(x, 0, make({1}, {1, 1}, kInt64)), "index_select: index must be 1-d");
  CHECK_ERROR(k::index_select(x, 2, idx), "index_select: dim 2 is out of range");
}

TEST_CASE("index_add is out of place and accumulates duplicates") {
  Tensor x = ones({4, 2}, kFloat64);
  Tensor src = make(iota_values(6), {3, 2});
  Tensor idx = make({1, 3, 1}, {3}, kInt64);
  Tensor r = k::index_add(x, 0, idx, src);
  CHECK(r.to_vector() == std::vector<double>{1, 1, 5, 7, 1, 1, 3, 4});
  CHECK(x.to_vector() == std::vector<double>(8, 1.0));  // input untouched
  Tensor r2 = k::index_add(zeros({2, 3}, kInt64), 1, make({2, 2}, {2}, kInt64), make({1, 2, 3, 4}, {2, 2}, kInt64));
  CHECK(r2.to_vector() == std::vector<double>{0, 0, 3, 0, 0, 7});
  // Large, duplicate-heavy: the parallel split must be race-free.
  const int64_t rows = 10, dim = 4096, n = 64;
  std::vector<double> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<double>(i % 3);
  Tensor big = k::index_add(zeros({rows, dim}, kFloat64), 0, make(ids, {n}, kInt64), ones({n, dim}, kFloat64));
  const std::vector<double> bv = big.to_vector();
  CHECK(bv[0] == 22);
  CHECK(bv[dim] == 21);
  CHECK(bv[2 * dim + dim - 1] == 21);
  CHECK(bv[3 * dim] == 0);
  CHECK_ERROR(k::index_add(x, 0, idx, make(iota_values(4), {2, 2})),
              "index_add: src has shape [2,2] but input [4,2] with 3 indices along dim 0 needs [3,2]");
  CHECK_ERROR(k::index_add(x, 0, make({4}, {1}, kInt64), zeros({1, 2}, kFloat64)), "index_add: index 4 is out of range");
  CHECK_ERROR(k::index_add(x, 0, idx, zeros({3, 2}, kFloat32)), "index_add: dtypes float64 and float32 do not match");
}

TEST_CASE("gather and scatter_add") {
  Tensor x = make(iota_values(12), {3, 4});
  Tensor idx = make({0, 3, 1, 1, 2, 0}, {3, 2}, kInt64);
  Tensor g = k::gather(x, 1, idx);
  CHECK(g.shape() == Shape{3, 2});
  CHECK(g.to_vector() == std::vector<double>{0, 3, 5, 5, 10, 8});
  Tensor g0 = k::gather(x, 0, make({2, 0, 1, 2}, {1, 4}, kInt64));
  CHECK(g0.to_vector() == std::vector<double>{8, 1, 6, 11});
  CHECK(k::gather(transposed(x), 0, make({3, 0}, {2, 1}, kInt64)).to_vector() == std::vector<double>{3, 0});
  CHECK(k::gather(scalar(5.0), 0, scalar(0, kInt64)).item() == 5.0);
  CHECK(k::gather(x, 1, make({}, {3, 0}, kInt64)).shape() == Shape{3, 0});

  // scatter_add is the adjoint of gather: out[i][idx[i][j]] += src[i][j].
  Tensor src = make({1, 2, 3, 4, 5, 6}, {3, 2});
  Tensor s = k::scatter_add(zeros({3, 4}, kFloat64), 1, idx, src);
  CHECK(s.to_vector() == std::vector<double>{1, 0, 0, 2, 0, 7, 0, 0, 6, 0, 5, 0});
  Tensor s0 = k::scatter_add(ones({2, 2}, kInt64), 0, make({1, 1, 1, 0}, {2, 2}, kInt64),
                             make({1, 2, 3, 4}, {2, 2}, kInt64));
  CHECK(s0.to_vector() == std::vector<double>{1, 5, 5, 3});
  // index smaller than src: only the covered part of src counts.
  Tensor s1 = k::scatter_add(zeros({2}, kFloat64), 0, make({1}, {1}, kInt64), make({5, 100}, {2}));
  CHECK(s1.to_vector() == std::vector<double>{0, 5});
  // Large, all hitting the same few positions along dim (race-freedom of the parallel split).
  const int64_t rows = 256, cols = 512;
  std::vector<double> ids(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows * cols; ++i) ids[i] = static_cast<double>(i % 2);
  Tensor sb = k::scatter_add(zeros({rows, 2}, kFloat64), 1, make(ids, {rows, cols}, kInt64), ones({rows, cols}, kFloat64));
  CHECK(sb.to_vector() == std::vector<double>(static_cast<size_t>(rows * 2), 256.0));

  CHECK_ERROR(k::gather(x, 1, make({0, 1, 2}, {3}, kInt64)), "gather: index has 1 dims but input has 2");
  CHECK_ERROR(k::gather(x, 1, make({4}, {1, 1}, kInt64)), "gather: index 4 is out of range for dim 1 of size 4");
  CHECK_ERROR(k::gather(x, 1, zeros({4, 1}, kInt64)), "gather: index shape [4,1] is larger than input shape [3,4] at dim 0");
  CHECK_ERROR(k::gather(x, 1, zeros({3, 1}, kFloat64)), "gather: index must be int64, got float64");
  CHECK_ERROR(k::scatter_add(zeros({3, 4}, kFloat64), 1, idx, zeros({3, 1}, kFloat64)),
              "scatter_add: index shape [3,2] is larger than src shape [3,1] at dim 1");
  CHECK_ERROR(k::scatter_add(zeros({3, 4}, kFloat64), 1, make({9}, {1, 1}, kInt64), zeros({1, 1}, kFloat64)),
              "scatter_add: index 9 is out of range for dim 1 of size 4");
}

// ================================================================ concat

TEST_CASE("concat") {
  Tensor a = make(iota_values(6), {2, 3});
  Tensor b = make(iota_values(3, 10), {1, 3});
  Tensor c0 = k::concat({a, b}, 0);
  CHECK(c0.shape() == Shape{3, 3});
  CHECK(c0.to_vector() == std::vector<double>{0, 1, 2, 3, 4, 5, 10, 11, 12});
  Tensor c1 = k::concat({a, transposed(make(iota_values(4, 20), {2, 2})), make({}, {2, 0})}, -1);
  CHECK(c1.shape() == Shape{2, 5});
  CHECK(c1.to_vector() == std::vector<double>{0, 1, 2, 20, 22, 3, 4, 5, 21, 23});
  CHECK(k::concat({a}, 0).to_vector() == a.to_vector());
  CHECK(k::concat({make({}, {0, 3}), make({}, {0, 3})}, 0).shape() == Shape{0, 3});
  CHECK(k::concat({make({1, 2}, {2}, kInt64), make({3}, {1}, kInt64)}, 0).to_vector() == std::vector<double>{1, 2, 3});

  CHECK_ERROR(k::concat({}, 0), "concat: expected at least one tensor");
  CHECK_ERROR(k::concat({a, zeros({1, 3})}, 0), "concat: tensor 1 has dtype float32 but tensor 0 has float64");
  CHECK_ERROR(k::concat({a, make({1, 2}, {1, 2})}, 0),
              "concat: tensor 1 has shape [1,2] but tensor 0 has [2,3]; sizes must match except in dim 0");
  CHECK_ERROR(k::concat({a, make({1, 2, 3}, {3})}, 0), "need the same number of dims");
  CHECK_ERROR(k::concat({scalar(1.0), scalar(2.0)}, 0), "concat: zero-dim tensor 0 cannot be concatenated");
  CHECK_ERROR(k::concat({a, Tensor()}, 0), "concat: tensor 1 is an undefined tensor");
}

}  // TEST_SUITE
