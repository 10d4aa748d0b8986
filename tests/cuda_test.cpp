// The CUDA backend against the CPU backend, which defines the semantics: every Backend kernel on
// random inputs in float64 (and float32 with tolerances), with strided, transposed, broadcast and
// edge-sized operands; forward, backward and double backward of every entry of the gradcheck
// registry (gradcheck_table.h) on GPU tensors against the same on the CPU; the caching allocator;
// device-aware errors. Without a visible CUDA device the executable prints why and exits with 77,
// which ctest reports as skipped.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "../autograd/grad.h"
#include "../autograd/grad_mode.h"
#include "../autograd/ops.h"
#include "../cuda/cuda_allocator.h"
#include "../cuda/cuda_blas.h"
#include "../meta/models.h"
#include "../meta/sinusoid.h"
#include "../meta/trainer.h"
#include "../nn/functional.h"
#include "../nn/losses.h"
#include "../nn/mlp.h"
#include "../tensor/backend.h"
#include "../tensor/build_info.h"
#include "../tensor/creation.h"
#include "../tensor/device_graph.h"
#include "../tensor/kernels.h"
#include "../tensor/memory_stats.h"
#include "check_error.h"
#include "gradcheck_table.h"

namespace {

using namespace mg;
namespace k = mg::kernels;

const Device kGPU("cuda:0");

// ---------------------------------------------------------------- helpers

Tensor randn_on(const Shape& shape, DType dtype, uint64_t seed) {
  Generator gen(seed);
  return randn(shape, dtype, kCPU, &gen);
}

// t on the GPU with the same geometry (strides, offset) over a copy of its whole storage, so a
// transposed or sliced CPU input stays transposed or sliced on the GPU.
Tensor gpu_like(const Tensor& t) {
  const int64_t storage_numel = static_cast<int64_t>(t.storage()->nbytes() / element_size(t.dtype()));
  const Tensor whole = Tensor::make_view(t.detach(), {storage_numel}, {1}, 0);
  const Tensor on_gpu = k::to_device(whole, kGPU);
  Tensor view = Tensor::make_view(on_gpu, t.shape(), t.strides(), t.offset());
  if (t.requires_grad()) view.requires_grad_();
  return view;
}

bool close(double got, double want, double rtol, double atol) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::abs(got - want) <= atol + rtol * std::abs(want);
}

// gpu and cpu hold the same shape and dtype and values within rtol / atol (NaN where NaN).
void check_close(const Tensor& gpu, const Tensor& cpu, double rtol, double atol, const std::string& what) {
  INFO(what);
  REQUIRE(gpu.defined() == cpu.defined());
  if (!cpu.defined()) return;
  CHECK(gpu.device() == kGPU);
  REQUIRE(gpu.shape() == cpu.shape());
  CHECK(gpu.dtype() == cpu.dtype());
  const std::vector<double> g = gpu.values_as_double(), c = cpu.values_as_double();
  int bad = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    if (close(g[i], c[i], rtol, atol)) continue;
    if (++bad <= 3) FAIL_CHECK("element " << i << ": gpu " << g[i] << " vs cpu " << c[i]);
  }
  CHECK_MESSAGE(bad == 0, bad << " of " << c.size() << " elements differ");
}

void check_equal(const Tensor& gpu, const Tensor& cpu, const std::string& what) { check_close(gpu, cpu, 0, 0, what); }

// Tolerances for one dtype: float64 kernels agree to rounding; float32 ones use CUDA's math
// library (its exp, tanh, ... differ from the CPU's vectorised ones in the last bits).
double rtol_for(DType dtype) { return dtype == kFloat64 ? 1e-12 : 2e-5; }
double atol_for(DType dtype) { return dtype == kFloat64 ? 1e-12 : 1e-6; }

// A float tensor of shape on the CPU in three layouts: contiguous, transposed (last two dims
// swapped) and sliced (every other element of a wider last dim, starting at 1).
std::vector<std::pair<std::string, Tensor>> layouts(const Shape& shape, DType dtype, uint64_t seed) {
  std::vector<std::pair<std::string, Tensor>> out;
  out.emplace_back("contiguous", randn_on(shape, dtype, seed));
  if (shape.size() >= 2) {
    Shape swapped = shape;
    std::swap(swapped[swapped.size() - 1], swapped[swapped.size() - 2]);
    out.emplace_back("transposed", randn_on(swapped, dtype, seed + 1).transpose(-1, -2).detach());
    Shape wide = shape;
    wide.back() = 2 * wide.back() + 1;
    out.emplace_back("sliced", randn_on(wide, dtype, seed + 2).slice(-1, 1, wide.back(), 2).detach());
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------- plumbing

TEST_SUITE("cuda.plumbing") {
  TEST_CASE("the backend registers itself for cuda devices") {
    CHECK(has_backend(DeviceType::CUDA));
    CHECK(std::string(backend_for(kGPU).name()) == "cuda");
    CHECK(build_info().cuda_compiled);
    CHECK(build_info().cuda_devices >= 1);
  }

  TEST_CASE("to(device) copies both ways, in every layout and dtype") {
    for (DType dtype : {kFloat32, kFloat64}) {
      for (const auto& [name, x] : layouts({5, 7}, dtype, 1)) {
        const Tensor g = k::to_device(x, kGPU);
        CHECK(g.device() == kGPU);
        CHECK(g.is_contiguous());
        check_equal(g, x, "to cuda: " + name);
        const Tensor back = k::to_device(g, kCPU);
        CHECK(back.device() == kCPU);
        CHECK(back.values_as_double() == x.values_as_double());
        // A strided GPU source and a strided CPU destination.
        const Tensor gs = gpu_like(x);
        check_equal(gs, x, "strided view on the gpu: " + name);
        Tensor dst = zeros({7, 5}, dtype).transpose(0, 1);
        k::copy_(dst, gs);
        CHECK(dst.values_as_double() == x.values_as_double());
        // Into a strided GPU destination, converting dtype on the way.
        Tensor gdst = zeros({7, 5}, kFloat64, kGPU).transpose(0, 1);
        k::copy_(gdst, x);
        CHECK(gdst.values_as_double() == k::cast(x, kFloat64).values_as_double());
      }
    }
    const Tensor i = tensor(std::vector<int64_t>{1, -2, 3, INT64_MAX}, {4});
    CHECK(k::to_device(k::to_device(i, kGPU), kCPU).to_vector<int64_t>() == i.to_vector<int64_t>());
    // A broadcast (stride 0) source.
    Tensor wide = zeros({3, 4}, kFloat32, kGPU);
    k::copy_(wide, tensor({1.0, 2.0, 3.0, 4.0}));
    check_equal(wide, k::expand_to("test", tensor({1.0, 2.0, 3.0, 4.0}), {3, 4}), "broadcast copy to gpu");
    // Empty tensors and 0-d tensors.
    CHECK(k::to_device(zeros({0, 3}), kGPU).numel() == 0);
    CHECK(k::to_device(scalar(2.5, kFloat64), kGPU).item() == 2.5);
  }

  TEST_CASE("copies between cuda devices") {
    if (build_info().cuda_devices < 2) {
      MESSAGE("one CUDA device: the device-to-device copy between devices is not exercised");
      return;
    }
    const Device second("cuda:1");
    for (const auto& [name, x] : layouts({4, 6}, kFloat32, 3)) {
      const Tensor on1 = k::to_device(gpu_like(x), second);
      CHECK(on1.device() == second);
      CHECK(on1.values_as_double() == x.values_as_double());
      Tensor dst = zeros({6, 4}, kFloat64, kGPU).transpose(0, 1);
      k::copy_(dst, on1);
      CHECK(dst.values_as_double() == x.values_as_double());
    }
  }

  TEST_CASE("ops that mix devices name both") {
    const Tensor c = zeros({2, 2});
    const Tensor g = zeros({2, 2}, kFloat32, kGPU);
    CHECK_MG_ERROR(add(c, g), "add", "cpu", "cuda:0");
    CHECK_MG_ERROR(add(g, c), "add", "cuda:0", "cpu");
    CHECK_MG_ERROR(matmul(c, g), "matmul", "cpu", "cuda:0");
    CHECK_MG_ERROR(where(c, g, g), "where", "cpu", "cuda:0");
    CHECK_MG_ERROR(k::index_select(g, 0, tensor(std::vector<int64_t>{0}, {1})), "index_select", "cpu", "cuda:0");
    CHECK_MG_ERROR(k::concat({c, g}, 0), "concat", "cpu", "cuda:0");
    CHECK_MG_ERROR(k::softmax_backward(g, c, 0, false), "softmax_backward", "cuda:0", "cpu");
  }

  TEST_CASE("a device index this process does not see is an error, not a crash") {
    const Device missing(DeviceType::CUDA, build_info().cuda_devices);
    const std::string name = missing.str();
    CHECK_MG_ERROR(zeros({2}, kFloat32, missing), name, "CUDA device");
    CHECK_MG_ERROR(k::to_device(zeros({2}), missing), name);
    CHECK_MG_ERROR(memory_stats(missing), "memory_stats", name);
    CHECK_MG_ERROR(cuda::allocator_stats(-1), "cuda:-1");
  }

  TEST_CASE("index checks read indices that live on the gpu") {
    const Tensor x = zeros({3, 2}, kFloat32, kGPU);
    const Tensor bad = k::to_device(tensor(std::vector<int64_t>{0, 3}, {2}), kGPU);
    CHECK_MG_ERROR(k::index_select(x, 0, bad), "index_select", "index 3", "out of range");
    CHECK_MG_ERROR(k::gather(x, 0, k::to_device(tensor(std::vector<int64_t>{-1, 0}, {1, 2}), kGPU)), "gather", "-1");
  }
}

// ---------------------------------------------------------------- kernels

TEST_SUITE("cuda.kernels") {
  TEST_CASE("fill, arange and casts") {
    for (DType dtype : {kFloat32, kFloat64, kInt64}) {
      check_equal(full({3, 5}, 2.5, dtype, kGPU), full({3, 5}, 2.5, dtype), "full");
      check_equal(arange(-3.0, 17.0, 1.5, dtype, kGPU), arange(-3.0, 17.0, 1.5, dtype), "arange");
      Tensor g = zeros({4, 6}, dtype, kGPU);
      Tensor c = zeros({4, 6}, dtype);
      k::fill_(g.slice(1, 1, 6, 2), -7.0);
      k::fill_(c.slice(1, 1, 6, 2), -7.0);
      check_equal(g, c, "strided fill");
    }
    // Saturating float -> int64, as on the CPU.
    const double inf = std::numeric_limits<double>::infinity();
    const Tensor odd = tensor(std::vector<double>{1.7, -2.9, 1e30, -1e30, inf, -inf, std::nan(""), 0.5}, {8}, kFloat64);
    check_equal(k::cast(k::to_device(odd, kGPU), kInt64), k::cast(odd, kInt64), "float64 -> int64");
    check_equal(full({2}, std::nan(""), kInt64, kGPU), full({2}, std::nan(""), kInt64), "fill int64 with NaN");
    for (DType from : {kFloat32, kFloat64, kInt64})
      for (DType to : {kFloat32, kFloat64, kInt64}) {
        const Tensor x = k::cast(randn_on({3, 4}, kFloat64, 5) * 100.0, from).transpose(0, 1);
        check_equal(k::cast(gpu_like(x), to), k::cast(x, to), "cast");
      }
  }

  TEST_CASE("random: the CPU's numbers for the same seed and offset") {
    for (DType dtype : {kFloat32, kFloat64}) {
      Generator a(1234), b(1234);
      check_equal(rand({1000}, dtype, kGPU, &a), rand({1000}, dtype, kCPU, &b), "rand");
      check_equal(uniform({333}, -2.0, 5.0, dtype, kGPU, &a), uniform({333}, -2.0, 5.0, dtype, kCPU, &b), "uniform");
      // Box-Muller goes through log and cos, whose last ulp may differ between libraries.
      check_close(normal({1000}, 1.0, 3.0, dtype, kGPU, &a), normal({1000}, 1.0, 3.0, dtype, kCPU, &b), 1e-6, 1e-6,
                  "normal");
    }
    Generator a(99), b(99);
    check_equal(randint(-5, 1000000007, {2000}, kGPU, &a), randint(-5, 1000000007, {2000}, kCPU, &b), "randint");
  }

  TEST_CASE("unary ops, every op, every layout") {
    for (DType dtype : {kFloat64, kFloat32}) {
      for (int i = 0; i < static_cast<int>(UnaryOp::Count); ++i) {
        const UnaryOp op = static_cast<UnaryOp>(i);
        for (const auto& [name, x0] : layouts({3, 37}, dtype, 10 + i)) {
          Tensor x = x0;
          // log, sqrt, rsqrt: positive inputs (NaN handling is compared separately below).
          if (op == UnaryOp::Log || op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt) x = k::unary(UnaryOp::Abs, x0);
          check_close(k::unary(op, gpu_like(x)), k::unary(op, x), rtol_for(dtype), atol_for(dtype),
                      std::string(unary_op_name(op)) + " " + std::string(dtype_name(dtype)) + " " + name);
        }
      }
      if (dtype == kFloat32) continue;  // the CPU's vectorised float32 forms have their own edge cases
      const Tensor special = tensor(std::vector<double>{0.0, -0.0, 1e-30, -50.0, 50.0, 700.0, -700.0, std::nan(""),
                                                        std::numeric_limits<double>::infinity()},
                                    {9}, dtype);
      for (UnaryOp op : {UnaryOp::Sigmoid, UnaryOp::Relu, UnaryOp::Softplus, UnaryOp::Sign, UnaryOp::Tanh, UnaryOp::Exp,
                         UnaryOp::Abs, UnaryOp::GeluErf})
        check_close(k::unary(op, k::to_device(special, kGPU)), k::unary(op, special), rtol_for(dtype), atol_for(dtype),
                    std::string("special values ") + unary_op_name(op));
    }
    const Tensor ints = tensor(std::vector<int64_t>{-3, 0, 7, INT64_MIN, INT64_MAX}, {5});
    for (UnaryOp op : {UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Sign, UnaryOp::Square})
      check_equal(k::unary(op, k::to_device(ints, kGPU)), k::unary(op, ints),
                  std::string("int64 ") + unary_op_name(op));
    CHECK_MG_ERROR(k::unary(UnaryOp::Exp, k::to_device(ints, kGPU)), "exp", "int64");
  }

  TEST_CASE("binary ops, broadcasting and layouts") {
    for (DType dtype : {kFloat64, kFloat32}) {
      for (int i = 0; i < static_cast<int>(BinaryOp::Count); ++i) {
        const BinaryOp op = static_cast<BinaryOp>(i);
        const std::string label = std::string(binary_op_name(op)) + " " + std::string(dtype_name(dtype));
        auto base = [&](const Tensor& t) { return op == BinaryOp::Pow ? k::unary(UnaryOp::Abs, t) : t; };
        for (const auto& [name, a0] : layouts({4, 33}, dtype, 40 + i)) {
          const Tensor a = base(a0);
          for (const auto& [bname, b] : layouts({4, 33}, dtype, 60 + i))
            check_close(k::binary(op, gpu_like(a), gpu_like(b)), k::binary(op, a, b), rtol_for(dtype), atol_for(dtype),
                        label + " " + name + " with " + bname);
          const Tensor row = randn_on({33}, dtype, 7), col = randn_on({4, 1}, dtype, 8), s = randn_on({}, dtype, 9);
          check_close(k::binary(op, gpu_like(a), gpu_like(row)), k::binary(op, a, row), rtol_for(dtype),
                      atol_for(dtype), label + " with a row");
          check_close(k::binary(op, gpu_like(a), gpu_like(col)), k::binary(op, a, col), rtol_for(dtype),
                      atol_for(dtype), label + " with a column");
          check_close(k::binary(op, gpu_like(s), gpu_like(row)), k::binary(op, s, row), rtol_for(dtype),
                      atol_for(dtype), label + " 0-d with a row");
        }
        // Shapes that keep several dims after merging, and an odd length (the dense tail).
        const Tensor a = base(randn_on({2, 1, 5, 3}, dtype, 80)), b = randn_on({3, 1, 3}, dtype, 81);
        check_close(k::binary(op, gpu_like(a), gpu_like(b)), k::binary(op, a, b), rtol_for(dtype), atol_for(dtype),
                    label + " [2,1,5,3] with [3,1,3]");
        const Tensor c = base(randn_on({1001}, dtype, 82)), d = randn_on({1001}, dtype, 83);
        check_close(k::binary(op, gpu_like(c), gpu_like(d)), k::binary(op, c, d), rtol_for(dtype), atol_for(dtype),
                    label + " [1001]");
        // Unaligned dense operands (offset 1): the element-at-a-time dense path.
        const Tensor e = base(randn_on({1002}, dtype, 84)).slice(0, 1, 1002), f = randn_on({1001}, dtype, 85);
        check_close(k::binary(op, gpu_like(e), gpu_like(f)), k::binary(op, e, f), rtol_for(dtype), atol_for(dtype),
                    label + " unaligned");
      }
      const Tensor nan = tensor(std::vector<double>{std::nan(""), 1.0, 2.0}, {3}, dtype);
      const Tensor other = tensor(std::vector<double>{0.0, std::nan(""), 3.0}, {3}, dtype);
      for (BinaryOp op : {BinaryOp::Maximum, BinaryOp::Minimum, BinaryOp::Eq, BinaryOp::Ne, BinaryOp::Lt})
        check_equal(k::binary(op, gpu_like(nan), gpu_like(other)), k::binary(op, nan, other),
                    std::string("NaN ") + binary_op_name(op));
    }
    const Tensor a = tensor(std::vector<int64_t>{INT64_MAX, -4, 9, 0}, {4});
    const Tensor b = tensor(std::vector<int64_t>{1, 3, -9, 5}, {4});
    for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Maximum, BinaryOp::Minimum, BinaryOp::Eq,
                        BinaryOp::Lt, BinaryOp::Ge})
      check_equal(k::binary(op, gpu_like(a), gpu_like(b)), k::binary(op, a, b),
                  std::string("int64 ") + binary_op_name(op));
  }

  TEST_CASE("where with float and int64 conditions") {
    for (DType dtype : {kFloat32, kFloat64}) {
      const Tensor cond = k::binary(BinaryOp::Gt, randn_on({3, 1, 6}, dtype, 1), scalar(0.0, dtype));
      const Tensor b = randn_on({}, dtype, 3);
      for (const auto& [name, a] : layouts({4, 6}, dtype, 2)) {
        check_equal(k::where(gpu_like(cond), gpu_like(a), gpu_like(b)), k::where(cond, a, b), "float cond " + name);
        const Tensor icond = k::cast(cond, kInt64);
        check_equal(k::where(gpu_like(icond), gpu_like(b), gpu_like(a)), k::where(icond, b, a), "int64 cond " + name);
      }
    }
  }

  TEST_CASE("reductions: inner, outer, split and full") {
    struct Case {
      Shape shape;
      std::vector<int64_t> dims;
    };
    const std::vector<Case> cases = {
        {{3, 4, 5}, {}},  {{3, 4, 5}, {1}},  {{3, 4, 5}, {0, 2}},    {{3, 4, 5}, {2}},   {{3, 4, 5}, {0}},
        {{2000, 3}, {0}}, {{3, 50000}, {1}}, {{300001}, {}},         {{70, 90}, {0}},    {{5, 1, 7}, {1}},
        {{}, {}},         {{1, 1}, {0, 1}},  {{4, 3, 2, 5}, {1, 3}}, {{100000, 2}, {0}}, {{17, 4099}, {1}}};
    for (DType dtype : {kFloat64, kFloat32}) {
      for (const Case& c : cases) {
        for (const auto& [name, x] : layouts(c.shape, dtype, 5)) {
          for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
            const double tol = op == ReduceOp::Sum ? (dtype == kFloat64 ? 1e-10 : 1e-5) : 0.0;
            check_close(k::reduce(op, gpu_like(x), c.dims, true), k::reduce(op, x, c.dims, true), tol, tol,
                        std::string(reduce_op_name(op)) + " " + shape_str(c.shape) + " " + name);
          }
        }
      }
    }
    const Tensor ints = k::cast(randn_on({40, 7}, kFloat64, 6) * 1000.0, kInt64);
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
      check_equal(k::reduce(op, gpu_like(ints), {0}, false), k::reduce(op, ints, {0}, false), "int64 dim 0");
      check_equal(k::reduce(op, gpu_like(ints), {}, false), k::reduce(op, ints, {}, false), "int64 all");
    }
    const Tensor nan = tensor(std::vector<double>{1.0, std::nan(""), 3.0, -1.0, 2.0, 0.5}, {2, 3}, kFloat64);
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min})
      check_equal(k::reduce(op, gpu_like(nan), {1}, false), k::reduce(op, nan, {1}, false), "NaN propagates");
    CHECK(k::reduce(ReduceOp::Sum, zeros({0, 3}, kFloat32, kGPU), {0}, false).values_as_double() ==
          std::vector<double>{0, 0, 0});
  }

  TEST_CASE("argmax and argmin: first index wins ties, first NaN wins") {
    for (DType dtype : {kFloat64, kFloat32, kInt64}) {
      for (const auto& [name, x0] : layouts({6, 45}, kFloat64, 9)) {
        // Rounded values so that ties occur.
        const Tensor x = k::cast(k::unary(UnaryOp::Neg, k::cast(x0 * 2.0, kInt64)), dtype);
        for (ReduceOp op : {ReduceOp::Max, ReduceOp::Min})
          for (int64_t dim : {0, 1}) {
            auto [gv, gi] = k::arg_reduce(op, gpu_like(x), dim, true);
            auto [cv, ci] = k::arg_reduce(op, x, dim, true);
            check_equal(gv, cv, "values " + name);
            check_equal(gi, ci, "indices " + name);
          }
      }
    }
    const Tensor nan = tensor(std::vector<double>{1.0, std::nan(""), 3.0, std::nan(""), 3.0, 0.5}, {6}, kFloat64);
    check_equal(k::arg_reduce(ReduceOp::Max, gpu_like(nan), 0, false).second,
                k::arg_reduce(ReduceOp::Max, nan, 0, false).second, "NaN");
    const Tensor long_row = randn_on({3, 5000}, kFloat32, 11);
    check_equal(k::arg_reduce(ReduceOp::Min, gpu_like(long_row), 1, false).second,
                k::arg_reduce(ReduceOp::Min, long_row, 1, false).second, "long rows");
    check_equal(k::arg_reduce(ReduceOp::Max, gpu_like(scalar(4.0)), 0, false).second,
                k::arg_reduce(ReduceOp::Max, scalar(4.0), 0, false).second, "0-d");
  }

  TEST_CASE("matmul through cuBLAS: layouts, batches, broadcasting, vectors") {
    CHECK_FALSE(cuda::allow_tf32());
    struct Case {
      Shape a, b;
    };
    const std::vector<Case> cases = {{{3, 4}, {4, 5}},
                                     {{1, 7}, {7, 1}},
                                     {{7}, {7}},
                                     {{7}, {7, 3}},
                                     {{3, 7}, {7}},
                                     {{2, 3, 4}, {2, 4, 5}},
                                     {{2, 1, 3, 4}, {3, 4, 2}},
                                     {{5, 3, 4}, {4, 2}},
                                     {{4}, {2, 4, 3}},
                                     {{65, 130}, {130, 33}},
                                     {{1, 1}, {1, 1}},
                                     {{3, 0}, {0, 4}}};
    for (DType dtype : {kFloat64, kFloat32}) {
      const double tol = dtype == kFloat64 ? 1e-11 : 1e-4;
      for (const Case& c : cases) {
        const Tensor a = randn_on(c.a, dtype, 21), b = randn_on(c.b, dtype, 22);
        check_close(matmul(gpu_like(a), gpu_like(b)), matmul(a, b), tol, tol, shape_str(c.a) + " @ " + shape_str(c.b));
      }
      // Transposed and sliced operands (the sliced one needs a dense copy for cuBLAS).
      for (const auto& [an, a] : layouts({6, 9}, dtype, 23))
        for (const auto& [bn, b] : layouts({9, 5}, dtype, 24))
          check_close(matmul(gpu_like(a), gpu_like(b)), matmul(a, b), tol, tol, an + " @ " + bn);
      // A batch whose dims cannot be collapsed into one stride (kernels.cpp copies it).
      const Tensor batched = randn_on({3, 2, 4, 5}, dtype, 25).transpose(0, 1).detach();
      const Tensor rhs = randn_on({5, 6}, dtype, 26);
      check_close(matmul(gpu_like(batched), gpu_like(rhs)), matmul(batched, rhs), tol, tol, "permuted batch");
    }
  }

  TEST_CASE("TF32 only when asked for") {
    const Tensor a = randn_on({256, 256}, kFloat32, 27), b = randn_on({256, 256}, kFloat32, 28);
    const Tensor want = matmul(a, b);
    check_close(matmul(gpu_like(a), gpu_like(b)), want, 1e-4, 1e-4, "float32 by default");
    cuda::set_allow_tf32(true);
    CHECK(cuda::allow_tf32());
    check_close(matmul(gpu_like(a), gpu_like(b)), want, 2e-2, 5e-2, "TF32");
    cuda::set_allow_tf32(false);
    CHECK_FALSE(cuda::allow_tf32());
  }

  TEST_CASE("softmax, log-softmax and their backward") {
    struct Case {
      Shape shape;
      int64_t dim;
    };
    const std::vector<Case> cases = {{{4, 9}, 1},    {{4, 9}, 0},    {{2, 3, 5}, 1}, {{7}, 0},
                                     {{3, 3000}, 1}, {{2000, 2}, 0}, {{}, 0}};
    for (DType dtype : {kFloat64, kFloat32}) {
      // The CPU sums float32 rows in float lanes, converted to double every 4096 elements.
      const double rtol = dtype == kFloat64 ? 1e-12 : 1e-4, atol = dtype == kFloat64 ? 1e-13 : 1e-6;
      for (const Case& c : cases) {
        for (const auto& [name, x] : layouts(c.shape, dtype, 31)) {
          for (bool log : {false, true}) {
            const std::string label = std::string(log ? "log_softmax " : "softmax ") + shape_str(c.shape) + " dim " +
                                      std::to_string(c.dim) + " " + name;
            const Tensor cy = k::softmax(x, c.dim, log);
            check_close(k::softmax(gpu_like(x), c.dim, log), cy, rtol, atol, label);
            const Tensor g = randn_on(c.shape, dtype, 32);
            check_close(k::softmax_backward(gpu_like(cy), gpu_like(g), c.dim, log),
                        k::softmax_backward(cy, g, c.dim, log), rtol, atol, label + " backward");
          }
        }
      }
      const double inf = std::numeric_limits<double>::infinity();
      const Tensor masked = tensor(std::vector<double>{-inf, -inf, -inf, 1.0, -inf, 2.0}, {2, 3}, dtype);
      for (bool log : {false, true})
        check_close(k::softmax(gpu_like(masked), 1, log), k::softmax(masked, 1, log), rtol, atol, "-inf rows");
    }
  }

  TEST_CASE("layer_norm: mean and rstd as the CPU returns them") {
    for (DType dtype : {kFloat64, kFloat32}) {
      const double tol = dtype == kFloat64 ? 1e-12 : 1e-4;
      for (const Shape& shape : {Shape{4, 10}, Shape{3, 2, 5}, Shape{2, 3000}, Shape{1, 1}, Shape{37, 64}}) {
        const int64_t cols = shape.back();
        const Tensor x = randn_on(shape, dtype, 41) * 3.0 + 1.0;
        const Tensor w = randn_on({cols}, dtype, 42), b = randn_on({cols}, dtype, 43);
        for (int mode = 0; mode < 4; ++mode) {
          const Tensor wm = mode & 1 ? w : Tensor(), bm = mode & 2 ? b : Tensor();
          const auto g = k::layer_norm(gpu_like(x), 1, wm.defined() ? gpu_like(wm) : Tensor(),
                                       bm.defined() ? gpu_like(bm) : Tensor(), 1e-5);
          const auto c = k::layer_norm(x, 1, wm, bm, 1e-5);
          const std::string label = shape_str(shape) + " mode " + std::to_string(mode);
          check_close(g.out, c.out, tol, tol, label + " out");
          check_close(g.mean, c.mean, tol, tol, label + " mean");
          check_close(g.rstd, c.rstd, tol, tol, label + " rstd");
        }
      }
    }
  }

  TEST_CASE("adam_step: the CPU's update to the bit") {
    for (DType dtype : {kFloat64, kFloat32}) {
      for (int variant = 0; variant < 4; ++variant) {
        Backend::AdamStep step{0.9,
                               0.999,
                               1e-8,
                               variant >= 2 ? 0.01 : 0.0,
                               variant == 3 ? 0.999 : 1.0,
                               std::sqrt(1.0 - std::pow(0.999, 3)),
                               1e-3 / (1.0 - std::pow(0.9, 3)),
                               variant == 3,
                               variant == 1,
                               variant == 2};
        Tensor p = randn_on({1003}, dtype, 50), g = randn_on({1003}, dtype, 51);
        Tensor m = randn_on({1003}, dtype, 52) * 0.1, v = k::unary(UnaryOp::Square, randn_on({1003}, dtype, 53));
        Tensor vmax = k::unary(UnaryOp::Square, randn_on({1003}, dtype, 54));
        Tensor gp = k::clone(gpu_like(p)), gm = k::clone(gpu_like(m)), gv = k::clone(gpu_like(v)),
               gvmax = k::clone(gpu_like(vmax));
        k::adam_step(p, g, m, v, vmax, step);
        k::adam_step(gp, gpu_like(g), gm, gv, gvmax, step);
        const std::string label = std::string(dtype_name(dtype)) + " variant " + std::to_string(variant);
        check_equal(gp, p, label + " param");
        check_equal(gm, m, label + " exp_avg");
        check_equal(gv, v, label + " exp_avg_sq");
        check_equal(gvmax, vmax, label + " max_exp_avg_sq");
      }
    }
  }

  TEST_CASE("index_select, index_add, gather, scatter_add with repeated indices") {
    const Tensor idx = tensor(std::vector<int64_t>{2, 0, 2, 3, 3, 1}, {6});
    for (DType dtype : {kFloat64, kFloat32, kInt64}) {
      const double tol = dtype == kFloat32 ? 1e-5 : 1e-12;
      for (const auto& [name, x0] : layouts({4, 5}, kFloat64, 61)) {
        const Tensor x = k::cast(x0 * 10.0, dtype);
        for (int64_t dim : {0, 1}) {
          const Tensor& i = idx;
          check_equal(k::index_select(gpu_like(x), dim, gpu_like(i)), k::index_select(x, dim, i),
                      "index_select " + name);
          Shape src_shape = x.shape();
          src_shape[dim] = 6;
          const Tensor src = k::cast(randn_on(src_shape, kFloat64, 62) * 10.0, dtype);
          check_close(k::index_add(gpu_like(x), dim, gpu_like(i), gpu_like(src)), k::index_add(x, dim, i, src), tol,
                      tol, "index_add " + name);
        }
        const Tensor gi = tensor(std::vector<int64_t>{3, 0, 3, 1, 1, 2, 0, 0}, {2, 4});
        check_equal(k::gather(gpu_like(x), 0, gpu_like(gi)), k::gather(x, 0, gi), "gather dim 0 " + name);
        const Tensor gi1 = tensor(std::vector<int64_t>{4, 0, 4, 1, 1, 2, 0, 0, 3, 3, 3, 3}, {4, 3});
        check_equal(k::gather(gpu_like(x), 1, gpu_like(gi1)), k::gather(x, 1, gi1), "gather dim 1 " + name);
        const Tensor src = k::cast(randn_on({5, 6}, kFloat64, 63) * 10.0, dtype);
        check_close(k::scatter_add(gpu_like(x), 0, gpu_like(gi), gpu_like(src)), k::scatter_add(x, 0, gi, src), tol,
                    tol, "scatter_add dim 0 " + name);
        check_close(k::scatter_add(gpu_like(x), 1, gpu_like(gi1), gpu_like(src)), k::scatter_add(x, 1, gi1, src), tol,
                    tol, "scatter_add dim 1 " + name);
      }
    }
    // A strided index.
    const Tensor wide = tensor(std::vector<int64_t>{1, 9, 0, 9, 1}, {5}).slice(0, 0, 5, 2);
    const Tensor x = randn_on({3, 2}, kFloat64, 64);
    check_equal(k::index_select(gpu_like(x), 0, gpu_like(wide)), k::index_select(x, 0, wide), "strided index");
  }

  TEST_CASE("im2col and col2im over windows") {
    struct Case {
      Shape x;
      Window2d w;
    };
    const std::vector<Case> cases = {
        {{1, 1, 4, 4}, {3, 3, 1, 1, 0, 0, 1, 1}},
        {{2, 3, 5, 4}, {2, 3, 2, 1, 1, 0, 1, 1}},
        {{1, 2, 5, 5}, {2, 2, 2, 2, 1, 1, 2, 2}},
        {{2, 4, 9, 7}, {3, 3, 2, 2, 1, 1, 1, 1}},
    };
    for (DType dtype : {kFloat64, kFloat32}) {
      for (const Case& c : cases) {
        for (const auto& [name, x] : layouts(c.x, dtype, 71)) {
          for (double pad : {0.0, -std::numeric_limits<double>::infinity()})
            check_equal(k::im2col(gpu_like(x), c.w, pad), k::im2col(x, c.w, pad), "im2col " + name);
          const Tensor cols = k::im2col(x, c.w);
          const Tensor g = randn_on(cols.shape(), dtype, 72);
          check_close(k::col2im(gpu_like(g), c.x[2], c.x[3], c.w), k::col2im(g, c.x[2], c.x[3], c.w), rtol_for(dtype),
                      atol_for(dtype), "col2im " + name);
          const Tensor gt = randn_on({cols.shape()[0], cols.shape()[2], cols.shape()[1]}, dtype, 73).transpose(1, 2);
          check_close(k::col2im(gpu_like(gt), c.x[2], c.x[3], c.w), k::col2im(gt, c.x[2], c.x[3], c.w), rtol_for(dtype),
                      atol_for(dtype), "col2im of transposed columns " + name);
        }
      }
    }
  }

  TEST_CASE("concat and clone go through copy") {
    const Tensor a = randn_on({2, 3}, kFloat32, 81), b = randn_on({4, 3}, kFloat32, 82).slice(0, 0, 4, 2);
    check_equal(k::concat({gpu_like(a), gpu_like(b)}, 0), k::concat({a, b}, 0), "concat");
    check_equal(k::clone(gpu_like(b)), k::clone(b), "clone");
  }
}

// ---------------------------------------------------------------- autograd

TEST_SUITE("cuda.autograd") {
  // Every entry of the gradcheck registry: f on GPU inputs (same values, same layouts) gives the
  // CPU's value; the gradient of <f, w> for a fixed random w, taken with create_graph, gives the
  // CPU's; and the gradient of <that gradient, v> (double backward) gives the CPU's too. The
  // backward formulas are device-independent ops, so this checks every kernel they use on the GPU.
  TEST_CASE("forward, backward and double backward of every registry entry match the CPU") {
    int cases = 0;
    for (const testing::GradcheckEntry& e : testing::table()) {
      const std::string label = std::string(op_name(e.id)) + " / " + e.case_name;
      INFO(label);
      ++cases;
      try {
        const TensorList cpu_in = e.make_inputs();
        TensorList gpu_in;
        for (const Tensor& t : cpu_in) gpu_in.push_back(gpu_like(t));
        const Tensor cpu_out = e.f(cpu_in);
        const Tensor gpu_out_any = e.f(gpu_in);
        // An entry may bring its result back to the CPU itself (to_device): compare on the GPU.
        const Tensor gpu_out = gpu_out_any.device() == kGPU ? gpu_out_any : gpu_like(gpu_out_any);
        const Tensor cpu_out_cmp = cpu_out;
        check_close(gpu_out, cpu_out_cmp, 1e-10, 1e-10, "forward");

        TensorList cpu_wrt, gpu_wrt;
        for (size_t i = 0; i < cpu_in.size(); ++i)
          if (cpu_in[i].requires_grad()) {
            cpu_wrt.push_back(cpu_in[i]);
            gpu_wrt.push_back(gpu_in[i]);
          }
        if (cpu_wrt.empty() || !cpu_out.requires_grad()) continue;
        const Tensor w = randn_on(cpu_out.shape(), cpu_out.dtype(), 1000 + cases);
        const GradOptions opts{.create_graph = true, .retain_graph = true, .allow_unused = true};
        const TensorList cpu_g = grad({cpu_out}, cpu_wrt, {w}, opts);
        const TensorList gpu_g = grad({gpu_out_any}, gpu_wrt, {k::to_device(w, gpu_out_any.device())}, opts);
        REQUIRE(cpu_g.size() == gpu_g.size());
        TensorList cpu_gg_out, gpu_gg_out, cpu_v, gpu_v;
        for (size_t i = 0; i < cpu_g.size(); ++i) {
          check_close(gpu_g[i], cpu_g[i], 1e-9, 1e-10, "gradient of input " + std::to_string(i));
          if (cpu_g[i].defined() && cpu_g[i].requires_grad()) {
            cpu_gg_out.push_back(cpu_g[i]);
            gpu_gg_out.push_back(gpu_g[i]);
            const Tensor v = randn_on(cpu_g[i].shape(), cpu_g[i].dtype(), 2000 + cases + static_cast<int>(i));
            cpu_v.push_back(v);
            gpu_v.push_back(k::to_device(v, kGPU));
          }
        }
        if (cpu_gg_out.empty()) continue;
        const GradOptions second{.create_graph = false, .retain_graph = false, .allow_unused = true};
        const TensorList cpu_gg = grad(cpu_gg_out, cpu_wrt, cpu_v, second);
        const TensorList gpu_gg = grad(gpu_gg_out, gpu_wrt, gpu_v, second);
        for (size_t i = 0; i < cpu_gg.size(); ++i)
          check_close(gpu_gg[i], cpu_gg[i], 1e-9, 1e-10, "double backward, input " + std::to_string(i));
      } catch (const Error& err) {
        FAIL_CHECK("threw mg::Error: " << err.what());
      }
    }
    MESSAGE("CPU/GPU parity: " << cases << " registry cases");
  }

  TEST_CASE("a small MLP's MAML-style second-order gradient in float32") {
    Generator gen(5);
    const Tensor w1 = randn({1, 40}, kFloat32, kCPU, &gen) * 0.5, w2 = randn({40, 1}, kFloat32, kCPU, &gen) * 0.5;
    const Tensor x = randn({10, 1}, kFloat32, kCPU, &gen), y = randn({10, 1}, kFloat32, kCPU, &gen);
    auto meta_grad = [&](Device d) {
      Tensor a = k::to_device(w1, d).requires_grad_(), b = k::to_device(w2, d).requires_grad_();
      const Tensor xd = k::to_device(x, d), yd = k::to_device(y, d);
      auto loss = [&](const Tensor& p, const Tensor& q) { return mean(square(matmul(relu(matmul(xd, p)), q) - yd)); };
      const TensorList g = grad({loss(a, b)}, {a, b}, {}, {.create_graph = true});
      const Tensor outer = loss(a - g[0] * 0.01, b - g[1] * 0.01);
      return grad({outer}, {a, b});
    };
    const TensorList c = meta_grad(kCPU), g = meta_grad(kGPU);
    check_close(g[0], c[0], 1e-4, 1e-5, "meta-gradient w1");
    check_close(g[1], c[1], 1e-4, 1e-5, "meta-gradient w2");
  }
}

// ---------------------------------------------------------------- allocator

TEST_SUITE("cuda.allocator") {
  TEST_CASE("size classes") {
    CHECK(cuda::allocation_size(0) == 512);
    CHECK(cuda::allocation_size(1) == 512);
    CHECK(cuda::allocation_size(513) == 1024);
    CHECK(cuda::allocation_size(1 << 20) == (1 << 20));
    CHECK(cuda::allocation_size((1 << 20) + 1) == (2 << 20));
    CHECK(cuda::allocation_size(5 << 20) == (6 << 20));
  }

  TEST_CASE("an inner loop's small tensors never reach cudaMalloc after warm-up") {
    auto step = [](const Tensor& w) {
      const Tensor h = relu(matmul(w, w) + 1.0);
      return k::reduce(ReduceOp::Sum, softmax(h, -1) * h, {}, false);
    };
    const Tensor w = randn({16, 16}, kFloat32, kGPU);
    (void)step(w).item();  // warm-up: fills the cache with every size class the loop needs
    const cuda::AllocatorStats before = cuda::allocator_stats(0);
    for (int i = 0; i < 2000; ++i) (void)step(w);
    (void)step(w).item();
    const cuda::AllocatorStats after = cuda::allocator_stats(0);
    CHECK(after.device_malloc_calls == before.device_malloc_calls);
    CHECK(after.cache_hits > before.cache_hits + 2000);
    CHECK(after.allocated_bytes == before.allocated_bytes);
  }

  TEST_CASE("statistics, peak and empty_cache") {
    empty_cache(kGPU);
    const cuda::AllocatorStats base = cuda::allocator_stats(0);
    CHECK(base.reserved_bytes == base.allocated_bytes);
    reset_peak_memory_stats(kGPU);
    {
      const Tensor big = empty({3 << 20}, kFloat32, kGPU);  // 12 MiB
      const MemoryStats during = memory_stats(kGPU);
      CHECK(during.allocated == base.allocated_bytes + (12 << 20));
      CHECK(during.peak_allocated >= during.allocated);
      const int64_t mallocs = cuda::allocator_stats(0).device_malloc_calls;
      CHECK(mallocs > base.device_malloc_calls);
    }
    const cuda::AllocatorStats freed = cuda::allocator_stats(0);
    CHECK(freed.allocated_bytes == base.allocated_bytes);
    CHECK(freed.reserved_bytes == base.reserved_bytes + (12 << 20));  // cached, not returned
    CHECK(freed.peak_allocated_bytes == base.allocated_bytes + (12 << 20));
    {
      const Tensor again = empty({3 << 20}, kFloat32, kGPU);  // served from the cache
      CHECK(cuda::allocator_stats(0).device_malloc_calls == freed.device_malloc_calls);
    }
    {
      const Tensor smaller = empty({(3 << 20) - 1000}, kFloat32, kGPU);  // same 2 MiB class
      CHECK(cuda::allocator_stats(0).device_malloc_calls == freed.device_malloc_calls);
    }
    empty_cache(kGPU);
    const cuda::AllocatorStats emptied = cuda::allocator_stats(0);
    CHECK(emptied.reserved_bytes == emptied.allocated_bytes);
    CHECK(emptied.device_free_calls > freed.device_free_calls);
    reset_peak_memory_stats(kGPU);
    CHECK(memory_stats(kGPU).peak_allocated == emptied.allocated_bytes);
  }

  TEST_CASE("out of memory is an mg::Error") {
    CHECK_MG_ERROR(empty({int64_t{1} << 46}, kFloat32, kGPU), "cuda allocator", "cuda:0");
    // The device is still usable afterwards.
    CHECK(full({4}, 1.0, kFloat32, kGPU).values_as_double() == std::vector<double>{1, 1, 1, 1});
  }
}

// ---------------------------------------------------------------- graphs

TEST_SUITE("cuda.graphs") {
  TEST_CASE("a captured forward and second-order backward replays on new inputs as eager work computes them") {
    Generator gen(11);
    const Tensor w1 = k::to_device(randn({1, 40}, kFloat32, kCPU, &gen) * 0.5, kGPU).requires_grad_();
    const Tensor w2 = k::to_device(randn({40, 1}, kFloat32, kCPU, &gen) * 0.5, kGPU).requires_grad_();
    Tensor x = empty({10, 1}, kFloat32, kGPU), y = empty({10, 1}, kFloat32, kGPU);
    auto meta_grad = [&] {
      auto loss = [&](const Tensor& p, const Tensor& q) { return mean(square(matmul(relu(matmul(x, p)), q) - y)); };
      const TensorList g = grad({loss(w1, w2)}, {w1, w2}, {}, {.create_graph = true});
      const Tensor outer = loss(w1 - g[0] * 0.01, w2 - g[1] * 0.01);
      TensorList out = grad({outer}, {w1, w2});
      out.push_back(outer.detach());
      return out;
    };
    x.copy_(randn({10, 1}, kFloat32, kCPU, &gen));
    y.copy_(randn({10, 1}, kFloat32, kCPU, &gen));
    (void)meta_grad();  // warm-up: the cache holds every size the step needs
    TensorList captured;
    const std::unique_ptr<DeviceGraph> graph = capture_graph(kGPU, [&] { captured = meta_grad(); });
    CHECK(graph->device() == kGPU);
    for (int round = 0; round < 3; ++round) {
      INFO("round " << round);
      x.copy_(randn({10, 1}, kFloat32, kCPU, &gen));
      y.copy_(randn({10, 1}, kFloat32, kCPU, &gen));
      for (Tensor& t : captured) t.fill_(std::nan(""));  // a replay must write every element
      const int64_t mallocs = cuda::allocator_stats(0).device_malloc_calls;
      graph->replay();
      const TensorList eager = meta_grad();
      CHECK(cuda::allocator_stats(0).device_malloc_calls == mallocs);
      for (std::size_t i = 0; i < eager.size(); ++i)
        check_equal(captured[i], eager[i].to(kCPU), "output " + std::to_string(i));
    }
  }

  TEST_CASE("cross-entropy records without reading its targets on the host") {
    Generator gen(4);
    const Tensor logits = k::to_device(randn({12, 5}, kFloat32, kCPU, &gen), kGPU).requires_grad_();
    Tensor target = k::to_device(randint(0, 5, {12}, kCPU, &gen), kGPU);
    Tensor loss, grad_logits;
    auto step = [&] {
      const Tensor l = nn::cross_entropy(logits, target);
      return std::make_pair(l.detach(), grad({l}, {logits})[0]);
    };
    (void)step();
    const std::unique_ptr<DeviceGraph> graph = capture_graph(kGPU, [&] { std::tie(loss, grad_logits) = step(); });
    target.copy_(k::to_device(randint(0, 5, {12}, kCPU, &gen), kGPU));
    graph->replay();
    const auto [eager_loss, eager_grad] = step();
    check_equal(loss, eager_loss.to(kCPU), "loss");
    check_equal(grad_logits, eager_grad.to(kCPU), "gradient");
    target.fill_(7);  // out of range: eagerly an error, replayed a NaN
    CHECK_MG_ERROR(step(), "out of range");
    graph->replay();
    CHECK(std::isnan(loss.item()));
  }

  TEST_CASE("index_select, gather and their accumulations record without reading indices on the host") {
    // An embedding lookup and its backward (index_add), and gather / scatter_add, captured; new
    // indices copied in before a replay. Out of range: eagerly an error, replayed a NaN for the
    // selections and nothing accumulated.
    Generator gen(6);
    const Tensor table = k::to_device(randn({7, 3}, kFloat32, kCPU, &gen), kGPU).requires_grad_();
    Tensor rows = k::to_device(randint(0, 7, {5}, kCPU, &gen), kGPU);
    Tensor picks = k::to_device(randint(0, 3, {7, 2}, kCPU, &gen), kGPU);
    Tensor selected, gathered, table_grad;
    auto step = [&] {
      const Tensor s = k::index_select(table, 0, rows);
      const Tensor g = k::gather(table, 1, picks);
      const Tensor l = sum(index_select(table, 0, rows) * 2.0) + sum(gather(table, 1, picks));
      return std::make_tuple(s.detach(), g.detach(), grad({l}, {table})[0]);
    };
    (void)step();
    const std::unique_ptr<DeviceGraph> graph =
        capture_graph(kGPU, [&] { std::tie(selected, gathered, table_grad) = step(); });
    rows.copy_(k::to_device(randint(0, 7, {5}, kCPU, &gen), kGPU));
    picks.copy_(k::to_device(randint(0, 3, {7, 2}, kCPU, &gen), kGPU));
    graph->replay();
    const auto [s, g, dt] = step();
    check_equal(selected, s.to(kCPU), "index_select");
    check_equal(gathered, g.to(kCPU), "gather");
    check_equal(table_grad, dt.to(kCPU), "gradient");
    rows.copy_(tensor(std::vector<int64_t>{0, 9, 1, -1, 2}, {5}, kGPU));
    CHECK_MG_ERROR(step(), "out of range");
    graph->replay();
    const std::vector<double> values = selected.to(kCPU).values_as_double();
    for (int c = 0; c < 3; ++c) {
      CHECK(std::isnan(values[3 + c]));
      CHECK(std::isnan(values[9 + c]));
      CHECK(values[c] == table.to(kCPU).values_as_double()[c]);
    }
    // Table row 0 gets 2 from its one in-range lookup plus its gather count; nothing lands
    // outside the table (9 and -1 accumulate nothing).
    const std::vector<double> grads = table_grad.to(kCPU).values_as_double();
    CHECK(std::all_of(grads.begin(), grads.end(), [](double v) { return std::isfinite(v); }));

    // Per-task tables [T, num, dim] (a task-batched embedding): an index past its own table must
    // not read the next task's, so replayed it selects NaN as well.
    const Tensor tables = k::to_device(randn({2, 4, 3}, kFloat32, kCPU, &gen), kGPU).requires_grad_();
    Tensor tokens = k::to_device(randint(0, 4, {2, 3}, kCPU, &gen), kGPU);
    Tensor looked_up;
    const std::unique_ptr<DeviceGraph> per_task =
        capture_graph(kGPU, [&] { looked_up = nn::functional::embedding(tokens, tables).detach(); });
    tokens.copy_(tensor(std::vector<int64_t>{0, 3, 4, 1, 2, 3}, {2, 3}, kGPU));
    per_task->replay();
    const std::vector<double> got = looked_up.to(kCPU).values_as_double(), t = tables.to(kCPU).values_as_double();
    for (int c = 0; c < 3; ++c) {
      CHECK(got[3 + c] == t[3 * 3 + c]);   // task 0, row 3
      CHECK(std::isnan(got[6 + c]));       // task 0, row 4: past its table
      CHECK(got[9 + c] == t[12 + 3 + c]);  // task 1, row 1
    }
    CHECK_MG_ERROR(nn::functional::embedding(tokens, tables), "out of range");
  }

  TEST_CASE("max_unpool2d records without reading its positions on the host") {
    // Replayed on new positions: the eager values; out of range: eagerly an error, replayed
    // nothing placed for it.
    const Tensor x = k::to_device(tensor(std::vector<double>{1, 2, 3, 4}, {1, 1, 2, 2}), kGPU);
    Tensor at = k::to_device(tensor(std::vector<int64_t>{0, 3, 8, 15}, {1, 1, 2, 2}), kGPU);
    Tensor placed;
    const std::unique_ptr<DeviceGraph> graph = capture_graph(kGPU, [&] { placed = max_unpool2d(x, at, {4, 4}); });
    at.copy_(tensor(std::vector<int64_t>{5, 6, 9, 10}, {1, 1, 2, 2}, kGPU));
    graph->replay();
    check_equal(placed, max_unpool2d(x, at, {4, 4}).to(kCPU), "new positions");
    at.copy_(tensor(std::vector<int64_t>{0, 16, -1, 15}, {1, 1, 2, 2}, kGPU));
    CHECK_MG_ERROR(max_unpool2d(x, at, {4, 4}), "outside");
    graph->replay();
    std::vector<double> want(16, 0.0);
    want[0] = 1;
    want[15] = 4;
    CHECK(placed.to(kCPU).values_as_double() == want);
  }

  TEST_CASE("a transformer classifier with padded sequences records and replays its forward and gradient") {
    // The attention masks, the padding-aware mean and the embedding each had a host read; while a
    // graph is captured they take the path without it. Replayed on new tokens: the eager values.
    Generator gen(8);
    meta::TransformerClassifier model(
        {.vocab = 11, .max_len = 6, .d_model = 8, .heads = 2, .layers = 1, .dim_feedforward = 16, .classes = 3}, &gen);
    model.to(kGPU);
    auto draw_tokens = [&] {
      Tensor t = randint(1, 11, {4, 6}, kCPU, &gen);
      for (int64_t b = 0; b < 4; ++b)  // padding (id 0) at the end of each sequence but the first
        for (int64_t j = 6 - b; j < 6; ++j) t.data_ptr<int64_t>()[b * 6 + j] = 0;
      return t;
    };
    Tensor tokens = k::to_device(draw_tokens(), kGPU);
    const Tensor labels = k::to_device(randint(0, 3, {4}, kCPU, &gen), kGPU);
    std::vector<Tensor> params;
    for (const auto& [name, p] : model.named_parameters()) params.push_back(p);
    auto step = [&] {
      const Tensor loss = nn::cross_entropy(model.forward(tokens), labels);
      TensorList out = grad({loss}, params);
      out.insert(out.begin(), loss.detach());
      return out;
    };
    (void)step();
    TensorList captured;
    const std::unique_ptr<DeviceGraph> graph = capture_graph(kGPU, [&] { captured = step(); });
    tokens.copy_(k::to_device(draw_tokens(), kGPU));
    graph->replay();
    const TensorList eager = step();
    REQUIRE(captured.size() == eager.size());
    // Not bit for bit: the embedding's gradient accumulates with atomics, in arrival order.
    for (std::size_t i = 0; i < eager.size(); ++i)
      check_close(captured[i], eager[i].to(kCPU), 1e-5, 1e-5, "output " + std::to_string(i));
  }

  TEST_CASE("eager work after a capture never takes the graph's blocks") {
    const Tensor x = randn({256}, kFloat32, kGPU);
    Tensor out;
    std::unique_ptr<DeviceGraph> graph = capture_graph(kGPU, [&] {
      const Tensor scratch = exp(x) + 1.0;  // freed inside the capture: the graph's to keep
      out = scratch * 2.0;
    });
    TensorList eager;
    for (int i = 0; i < 8; ++i) eager.push_back(full({256}, 7.0, kFloat32, kGPU));
    graph->replay();
    for (const Tensor& e : eager) CHECK(e.values_as_double() == std::vector<double>(256, 7.0));
    check_close(out, ((exp(x) + 1.0) * 2.0).to(kCPU), 1e-6, 1e-6, "replayed output");
    graph.reset();  // the pool's blocks return to the cache; `out` stays valid
    CHECK(out.values_as_double().size() == 256);
  }

  TEST_CASE("the trainer on a GPU, eager and replaying its recorded step, follows the CPU's training") {
    auto run = [](Device device, bool recorded) {
      Generator gen(3);
      auto model = nn::make_mlp({.sizes = {1, 16, 16, 1}, .activation = nn::functional::Activation::ReLU}, &gen);
      model->to(kFloat64);
      if (device.is_cuda()) model->to(device);
      meta::SinusoidSampler tasks({.shots = 5, .queries = 5, .dtype = kFloat64}, 7);
      meta::TrainerConfig c;
      c.algorithm = meta::Algorithm::Maml;
      c.inner_steps = 2;
      c.meta_batch = 4;
      c.iterations = 6;
      c.log_interval = 0;
      c.batching = meta::Batching::TaskBatched;
      c.device_graph = recorded;
      meta::Trainer trainer(*model, tasks, nullptr, c);
      std::vector<double> losses;
      for (int i = 0; i < 6; ++i) losses.push_back(trainer.step());
      CHECK(trainer.replaying_graph() == recorded);
      losses.push_back(model->named_parameters().begin()->second.to(kCPU).values_as_double()[0]);
      return losses;
    };
    const std::vector<double> cpu = run(kCPU, false), eager = run(kGPU, false), replayed = run(kGPU, true);
    for (std::size_t i = 0; i < cpu.size(); ++i) {
      INFO("entry " << i);
      CHECK(eager[i] == doctest::Approx(cpu[i]).epsilon(1e-9));
      CHECK(replayed[i] == doctest::Approx(cpu[i]).epsilon(1e-9));
    }
  }

  TEST_CASE("what a graph cannot replay is refused at capture, and the device still works") {
    const Tensor x = randn({8}, kFloat32, kGPU);
    CHECK_MG_ERROR(capture_graph(kGPU, [&] { (void)sum(x).item(); }), "capture_graph", "on the host");
    CHECK_MG_ERROR(capture_graph(kGPU, [&] { (void)(x + k::to_device(ones({8}), kGPU)); }), "capture_graph",
                   "from the host");
    CHECK_MG_ERROR(capture_graph(kGPU, [&] { (void)rand({8}, kFloat32, kGPU); }), "capture_graph", "random");
    CHECK_MG_ERROR(capture_graph(kCPU, [] {}), "capture_graph", "CUDA device");
    CHECK(full({4}, 1.0, kFloat32, kGPU).values_as_double() == std::vector<double>{1, 1, 1, 1});
  }
}

int main(int argc, char** argv) {
  const mg::BuildInfo info = mg::build_info();
  if (!info.cuda_compiled || info.cuda_devices == 0) {
    std::printf("cuda_test: SKIPPED: %s\n",
                info.cuda_compiled ? "no CUDA device is visible to this process" : "metagrad was built without CUDA");
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
