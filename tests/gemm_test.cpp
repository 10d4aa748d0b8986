// Tests of the CPU GEMM behind matmul, for every micro-kernel set this CPU supports: odd shapes
// around the register tiles and cache blocks, float32 and float64, transposed, sliced and
// broadcast operands, k = 0, and the same bits from 1 and 2 threads.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../tensor/backend.h"
#include "../tensor/cpu/cpu_gemm.h"
#include "../tensor/cpu/cpu_gemm_pack.h"
#include "../tensor/creation.h"
#include "../tensor/flop_count.h"
#include "../tensor/kernels.h"
#include "../tensor/matmul_trace.h"
#include "../tensor/tensor.h"
#include "../tensor/threads.h"

using namespace mg;

namespace {

// Restores the process-wide kernel choice and thread count when a test case ends.
struct GemmStateGuard {
  std::string kernel = cpu::gemm_kernel_name();
  int threads = num_threads();
  ~GemmStateGuard() {
    cpu::set_gemm_kernel(kernel);
    set_num_threads(threads);
  }
};

Tensor random(const Shape& shape, DType dtype, uint64_t seed) {
  Generator gen(seed);
  return randn(shape, dtype, kCPU, &gen);
}

// a [B,M,K] or [M,K], b [B,K,N] or [K,N] (any strides); checks matmul against a loop that
// accumulates in double, with a tolerance relative to sum_k |a||b| of each element.
void check_matmul(const Tensor& a, const Tensor& b) {
  const Tensor out = kernels::matmul(a, b);
  const bool batched = a.dim() == 3 || b.dim() == 3;
  const int64_t batch = a.dim() == 3 ? a.size(0) : (b.dim() == 3 ? b.size(0) : 1);
  const int64_t m = a.size(a.dim() - 2), k = a.size(a.dim() - 1), n = b.size(b.dim() - 1);
  REQUIRE(out.dim() == (batched ? 3 : 2));
  const std::vector<double> av = a.values_as_double(), bv = b.values_as_double(), ov = out.values_as_double();
  const int64_t a_batch = a.dim() == 3 ? m * k : 0, b_batch = b.dim() == 3 ? k * n : 0;
  const double eps =
      a.dtype() == kFloat32 ? std::numeric_limits<float>::epsilon() : std::numeric_limits<double>::epsilon();
  // Raw pointers: this loop dominates the test's time in a Debug build with checked operator[].
  const double* ap = av.data();
  const double* bp = bv.data();
  const double* op = ov.data();
  int64_t bad = 0;
  for (int64_t bi = 0; bi < batch; ++bi)
    for (int64_t i = 0; i < m; ++i) {
      const double* arow = ap + bi * a_batch + i * k;
      for (int64_t j = 0; j < n; ++j) {
        const double* bcol = bp + bi * b_batch + j;
        double sum = 0, mag = 0;
        for (int64_t p = 0; p < k; ++p) {
          const double xy = arow[p] * bcol[p * n];
          sum += xy;
          mag += xy < 0 ? -xy : xy;
        }
        const double got = op[(bi * m + i) * n + j];
        if (!(std::abs(got - sum) <= static_cast<double>(k + 4) * eps * mag)) ++bad;
      }
    }
  CHECK_MESSAGE(bad == 0, cpu::gemm_kernel_name(), " ", a.dtype(), " a ", shape_str(a.shape()), " b ",
                shape_str(b.shape()), ": ", bad, " wrong elements");
}

// Runs body once per kernel set this CPU supports.
template <typename Body>
void for_each_kernel(Body&& body) {
  GemmStateGuard guard;
  for (const std::string& name : cpu::gemm_kernels_supported()) {
    REQUIRE(cpu::set_gemm_kernel(name));
    CHECK(std::string(cpu::gemm_kernel_name()) == name);
    body();
  }
}

const int64_t kSizes[] = {1, 2, 3, 7, 13, 31, 33, 64, 65, 100, 257};
constexpr int64_t kNumSizes = sizeof(kSizes) / sizeof(kSizes[0]);

}  // namespace

TEST_CASE("gemm kernel selection") {
  GemmStateGuard guard;
  const std::vector<std::string> names = cpu::gemm_kernels_supported();
  REQUIRE(!names.empty());
  CHECK(names.back() == "generic");
  CHECK_FALSE(cpu::set_gemm_kernel("no-such-kernel"));
  CHECK(std::find(names.begin(), names.end(), std::string(cpu::gemm_kernel_name())) != names.end());
}

#if defined(__x86_64__)
// The AVX2 transpose that packs row-major float A writes whole 8-lane vectors: its narrower group
// of rows (the last 6 of a 14-row AVX-512 panel, or a whole 6-row AVX2 panel) spills zeros onto
// the next depth's row. Checked against the portable packing on any AVX2 CPU, whatever kernel set
// the CPU runs, every element of the panels and nothing past them.
template <int64_t MR>
void check_avx_a_packing() {
  for (const int64_t rows : {1, 5, 6, 7, 8, 9, 13, 14, 15, 29})
    for (const int64_t depth : {1, 7, 8, 9, 16, 17, 33}) {
      const int64_t rs = depth + 3;
      std::vector<float> a(static_cast<size_t>(rows * rs));
      for (size_t i = 0; i < a.size(); ++i) a[i] = 1.0f + static_cast<float>(i);
      const int64_t packed = (rows + MR - 1) / MR * MR * depth;
      std::vector<float> want(static_cast<size_t>(packed + 16), -1.0f), got = want;
      cpu::pack_a_panels<float, MR>(a.data(), rs, 1, rows, depth, want.data());
      cpu::pack_a_panels_f32_avx<MR>(a.data(), rs, 1, rows, depth, got.data());
      CHECK_MESSAGE(got == want, "MR ", MR, " rows ", rows, " depth ", depth);
    }
}

TEST_CASE("AVX2 packing of row-major float A matches the portable packing") {
  if (!__builtin_cpu_supports("avx2")) return;
  check_avx_a_packing<6>();
  check_avx_a_packing<14>();
}
#endif

TEST_CASE("gemm shapes around the register tiles, plain and transposed") {
  for_each_kernel([] {
    for (DType dtype : {kFloat32, kFloat64}) {
      uint64_t seed = 1;
      for (int64_t i = 0; i < kNumSizes; ++i)
        for (int64_t j = 0; j < kNumSizes; ++j) {
          const int64_t m = kSizes[i], n = kSizes[j], k = kSizes[(3 * i + 5 * j + 1) % kNumSizes];
          if (m * n * k > 400000) continue;
          const int mode = static_cast<int>((i + 2 * j) % 4);  // bit 0: a transposed, bit 1: b transposed
          const Tensor a = mode & 1 ? random({k, m}, dtype, seed++).transpose(0, 1) : random({m, k}, dtype, seed++);
          const Tensor b = mode & 2 ? random({n, k}, dtype, seed++).transpose(0, 1) : random({k, n}, dtype, seed++);
          check_matmul(a, b);
        }
    }
  });
}

TEST_CASE("gemm batched, broadcast and sliced operands") {
  for_each_kernel([] {
    for (DType dtype : {kFloat32, kFloat64}) {
      // Separate batches, a batch-broadcast B (stride 0) through matmul's broadcasting and an
      // explicit expand, and the meta-learning shapes (a 1-row input, the backward's transposes).
      check_matmul(random({5, 13, 33}, dtype, 1), random({5, 33, 31}, dtype, 2));
      check_matmul(random({25, 10, 40}, dtype, 3), random({40, 40}, dtype, 4));
      check_matmul(random({4, 7, 65}, dtype, 5), random({65, 3}, dtype, 6).unsqueeze(0).expand({4, 65, 3}));
      check_matmul(random({13, 9}, dtype, 7).unsqueeze(0).expand({3, 13, 9}), random({3, 9, 17}, dtype, 8));
      check_matmul(random({10, 1}, dtype, 9), random({1, 40}, dtype, 10));
      check_matmul(random({10, 40}, dtype, 11).transpose(0, 1), random({10, 40}, dtype, 12));
      check_matmul(random({10, 40}, dtype, 13), random({40, 40}, dtype, 14).transpose(0, 1));
      check_matmul(random({25, 40, 10}, dtype, 15).transpose(1, 2), random({25, 40, 40}, dtype, 16));
      // Per-task and batch-broadcast transposed B (packed per entry, or once for the batch).
      check_matmul(random({25, 10, 40}, dtype, 26), random({25, 40, 40}, dtype, 27).transpose(1, 2));
      check_matmul(random({6, 40, 40}, dtype, 28), random({10, 40}, dtype, 29).transpose(0, 1));
      // Matrix-vector products (one output column), which run as their transposes.
      check_matmul(random({25, 10, 40}, dtype, 20).transpose(1, 2), random({25, 10, 1}, dtype, 21));
      check_matmul(random({25, 10, 40}, dtype, 22), random({25, 1, 40}, dtype, 23).transpose(1, 2));
      check_matmul(random({3, 70, 9}, dtype, 24).narrow(2, 1, 7), random({7, 1}, dtype, 25));
      // Row and column slices: neither operand has unit strides matching its shape.
      const Tensor big_a = random({40, 70}, dtype, 17), big_b = random({80, 50}, dtype, 18);
      check_matmul(big_a.narrow(0, 3, 33).narrow(1, 5, 60), big_b.narrow(0, 7, 60).narrow(1, 2, 37));
      check_matmul(big_b.narrow(0, 1, 45).narrow(1, 4, 30).transpose(0, 1), big_b.narrow(0, 2, 45));
      check_matmul(big_a.slice(1, 0, 70, 2), random({35, 19}, dtype, 19));
    }
  });
}

TEST_CASE("matrix products count their arithmetic on the calling thread") {
  const int64_t before = cpu_matmul_flops_on_this_thread();
  kernels::matmul(random({5, 13, 33}, kFloat32, 1), random({5, 33, 31}, kFloat32, 2));
  CHECK(cpu_matmul_flops_on_this_thread() - before == 2 * 5 * 13 * 31 * 33);
  kernels::matmul(random({7, 9}, kFloat64, 3), random({9, 4}, kFloat64, 4));
  CHECK(cpu_matmul_flops_on_this_thread() - before == 2 * 5 * 13 * 31 * 33 + 2 * 7 * 4 * 9);
  // A product run on two threads is counted once, by the thread that called it.
  GemmStateGuard threads;
  set_num_threads(2);
  const int64_t big = cpu_matmul_flops_on_this_thread();
  kernels::matmul(random({300, 200}, kFloat32, 5), random({200, 250}, kFloat32, 6));
  CHECK(cpu_matmul_flops_on_this_thread() - big == 2 * 300 * 250 * 200);
}

TEST_CASE("a matmul trace records each product's shape and operand layouts on its thread") {
  const Tensor a = random({5, 13, 33}, kFloat32, 1), b_t = random({5, 31, 33}, kFloat32, 2).transpose(1, 2);
  const Tensor shared = random({1, 6, 2}, kFloat64, 3).expand({4, 6, 2});
  MatmulTrace outer;
  kernels::matmul(a, b_t);
  {
    MatmulTrace inner;
    backend_for(kCPU).matmul(random({4, 3, 6}, kFloat64, 4).transpose(1, 2).transpose(1, 2), shared,
                             empty({4, 3, 2}, kFloat64, kCPU));
    backend_for(kCPU).matmul_sum(random({4, 6, 3}, kFloat32, 5).transpose(1, 2), random({4, 6, 5}, kFloat32, 6),
                                 empty({1, 3, 5}, kFloat32, kCPU));
    const Tensor every_other = random({4, 10, 12}, kFloat32, 7).slice(2, 0, 12, 2);
    backend_for(kCPU).matmul(every_other, random({4, 6, 2}, kFloat32, 8), empty({4, 10, 2}, kFloat32, kCPU));
    REQUIRE(inner.calls().size() == 3);
    const MatmulCall& broadcast = inner.calls()[0];
    CHECK((broadcast.batch == 4 && broadcast.m == 3 && broadcast.n == 2 && broadcast.k == 6));
    CHECK((broadcast.a_layout == MatrixLayout::RowMajor && broadcast.b_layout == MatrixLayout::RowMajor));
    CHECK((!broadcast.a_shared && broadcast.b_shared && !broadcast.sum_batch && broadcast.float64));
    const MatmulCall& summed = inner.calls()[1];
    CHECK((summed.batch == 4 && summed.m == 3 && summed.n == 5 && summed.k == 6));
    CHECK((summed.a_layout == MatrixLayout::ColumnMajor && summed.b_layout == MatrixLayout::RowMajor));
    CHECK((!summed.a_shared && !summed.b_shared && summed.sum_batch && !summed.float64));
    CHECK(inner.calls()[2].a_layout == MatrixLayout::Strided);
  }
  kernels::matmul(random({7, 9}, kFloat64, 9), random({9, 4}, kFloat64, 10));
  REQUIRE(outer.calls().size() == 2);
  const MatmulCall& transposed = outer.calls()[0];
  CHECK((transposed.batch == 5 && transposed.m == 13 && transposed.n == 31 && transposed.k == 33));
  CHECK((transposed.a_layout == MatrixLayout::RowMajor && transposed.b_layout == MatrixLayout::ColumnMajor));
  CHECK((!transposed.a_shared && !transposed.b_shared && !transposed.sum_batch && !transposed.float64));
  const MatmulCall& plain = outer.calls()[1];
  CHECK((plain.batch == 1 && plain.m == 7 && plain.n == 4 && plain.k == 9 && plain.float64));
}

TEST_CASE("gemm with k = 0 writes zeros") {
  for_each_kernel([] {
    for (DType dtype : {kFloat32, kFloat64}) {
      const Tensor out = kernels::matmul(random({3, 5, 0}, dtype, 1), random({3, 0, 4}, dtype, 2));
      CHECK(out.shape() == Shape{3, 5, 4});
      for (double v : out.values_as_double()) CHECK(v == 0.0);
    }
  });
}

TEST_CASE("gemm across the cache blocks") {
  // Rows past one mc block and depth past one kc block, then columns past one nc block, for
  // every kernel set; one larger product crossing all three with the default kernel set.
  for_each_kernel([] {
    check_matmul(random({350, 260}, kFloat32, 1), random({260, 40}, kFloat32, 2));
    check_matmul(random({260, 200}, kFloat64, 3).transpose(0, 1), random({260, 20}, kFloat64, 4));
    check_matmul(random({9, 70}, kFloat32, 5), random({70, 4200}, kFloat32, 6));
    check_matmul(random({5, 70}, kFloat64, 7), random({2100, 70}, kFloat64, 8).transpose(0, 1));
  });
  check_matmul(random({340, 520}, kFloat32, 9), random({520, 300}, kFloat32, 10));
}

TEST_CASE("gemm with a broadcast A packed once for the whole batch") {
  // A batch-broadcast A (a convolution's weight over a group of images) is packed whole, once:
  // rows past one mc block and depth past one kc block, one column block or several, 1 and 2
  // threads (2 threads split the rows of 3 batches into chunks, each packed on its own).
  GemmStateGuard threads;
  for_each_kernel([] {
    for (DType dtype : {kFloat32, kFloat64}) {
      const Tensor a = random({150, 300}, dtype, 1).unsqueeze(0).expand({3, 150, 300});
      const Tensor b = random({3, 300, 45}, dtype, 2);
      const Tensor wide_b = random({2, 70, 4200}, dtype, 3);
      const Tensor a_t = random({70, 9}, dtype, 4).transpose(0, 1).unsqueeze(0).expand({2, 9, 70});
      for (int threads_used : {1, 2}) {
        set_num_threads(threads_used);
        check_matmul(a, b);
        check_matmul(a_t, wide_b);
      }
    }
  });
}

TEST_CASE("gemm gives the same bits on 1 and 2 threads") {
  for_each_kernel([] {
    for (DType dtype : {kFloat32, kFloat64}) {
      const Tensor a = random({3, 150, 120}, dtype, 1), b = random({3, 120, 170}, dtype, 2);
      const Tensor a2 = random({250, 90}, dtype, 3), b2 = random({90, 260}, dtype, 4);
      set_num_threads(1);
      const std::vector<double> one = kernels::matmul(a, b).values_as_double();
      const std::vector<double> one2 = kernels::matmul(a2, b2).values_as_double();
      set_num_threads(2);
      CHECK(kernels::matmul(a, b).values_as_double() == one);
      CHECK(kernels::matmul(a2, b2).values_as_double() == one2);
    }
  });
}

TEST_CASE("gemm reading a larger A in place for a product of at most two column tiles") {
  // A past L1 but within L2 with n of one or two tiles: the kernels read A where it lies, also
  // across kc blocks (k = 300) and transposed, and the same bits on 1 and 2 threads.
  for_each_kernel([] {
    check_matmul(random({400, 64}, kFloat32, 1), random({64, 64}, kFloat32, 2));
    check_matmul(random({1000, 40}, kFloat32, 3), random({40, 16}, kFloat32, 4));
    check_matmul(random({200, 300}, kFloat32, 5), random({300, 30}, kFloat32, 6));
    check_matmul(random({300, 150}, kFloat32, 7).transpose(0, 1), random({300, 20}, kFloat32, 8));
    check_matmul(random({3, 200, 100}, kFloat64, 9), random({3, 100, 12}, kFloat64, 10));
  });
  const Tensor a = random({600, 100}, kFloat32, 11), b = random({100, 48}, kFloat32, 12);
  GemmStateGuard threads;
  set_num_threads(1);
  const std::vector<double> one = kernels::matmul(a, b).values_as_double();
  set_num_threads(2);
  CHECK(kernels::matmul(a, b).values_as_double() == one);
}

TEST_CASE("gemm of outer products and of a batch over a shared right operand") {
  // k = 1 narrower than a tile: plain products (+0 for a -0 product, as the tiles give); a shared
  // right operand under row-contiguous A matrices: one product of all their rows.
  for_each_kernel([] {
    for (DType dtype : {kFloat32, kFloat64}) {
      check_matmul(random({25, 40, 1}, dtype, 1), random({25, 1, 10}, dtype, 2));
      check_matmul(random({3, 7, 1}, dtype, 3), random({3, 5, 1}, dtype, 4).transpose(1, 2));
      check_matmul(random({25, 10, 40}, dtype, 5), random({40, 1}, dtype, 6));
      check_matmul(random({6, 9, 33}, dtype, 7), random({20, 33}, dtype, 8).transpose(0, 1));
      check_matmul(random({4, 33, 6}, dtype, 9).transpose(1, 2), random({33, 5}, dtype, 10));
    }
  });
  const Tensor minus_zero = kernels::matmul(full({1, 1}, -2.0, kFloat32, kCPU), zeros({1, 3}, kFloat32, kCPU));
  for (double v : minus_zero.values_as_double()) CHECK_FALSE(std::signbit(v));
}

TEST_CASE("gemm of a narrow product, run as its transpose") {
  // n far under a register tile's width, m over it and outputs of 256+ terms: out^T = b^T a^T
  // into scratch, then transposed into out, for plain, transposed and broadcast operands.
  for_each_kernel([] {
    for (DType dtype : {kFloat32, kFloat64}) {
      check_matmul(random({3, 64, 260}, dtype, 1), random({3, 260, 5}, dtype, 2));
      check_matmul(random({2, 300, 70}, dtype, 3).transpose(1, 2), random({2, 9, 300}, dtype, 4).transpose(1, 2));
      check_matmul(random({4, 100, 270}, dtype, 5), random({270, 3}, dtype, 6));
      check_matmul(random({29, 257}, dtype, 7), random({4, 257, 2}, dtype, 8));
    }
  });
}

TEST_CASE("gemm summed over the batch (matmul_sum)") {
  // Against the batch's products in float64, summed; a transposed b as a convolution's weight
  // gradient passes it, depths past one kc block, and the same bits on 1 and 2 threads.
  auto summed = [](const Tensor& a, const Tensor& b) {
    Tensor out = Tensor::empty({1, a.size(1), b.size(2)}, a.dtype(), kCPU);
    backend_for(kCPU).matmul_sum(a, b, out);
    return out;
  };
  for_each_kernel([&] {
    for (DType dtype : {kFloat32, kFloat64}) {
      struct Case {
        Tensor a, b;
      };
      const std::vector<Case> cases = {
          {random({5, 13, 33}, dtype, 1), random({5, 33, 31}, dtype, 2)},
          {random({4, 64, 196}, dtype, 3), random({4, 70, 196}, dtype, 4).transpose(1, 2)},
          {random({3, 20, 400}, dtype, 5), random({3, 400, 50}, dtype, 6)},
          {random({6, 7, 0}, dtype, 7), random({6, 0, 5}, dtype, 8)},
          {random({4, 30, 50}, dtype, 13), random({4, 50, 1}, dtype, 14)},
          {random({5, 10, 40}, dtype, 15), random({5, 40, 40}, dtype, 16).transpose(1, 2)},
          // Narrow (n = 9 under m = 64): run as the transposed product, across kc blocks.
          {random({5, 64, 300}, dtype, 17), random({5, 9, 300}, dtype, 18).transpose(1, 2)},
          {random({0, 7, 3}, dtype, 9), random({0, 3, 5}, dtype, 10)},
      };
      for (const Case& c : cases) {
        CAPTURE(shape_str(c.a.shape()));
        const Tensor want =
            kernels::reduce(ReduceOp::Sum, kernels::matmul(c.a.to(kFloat64), c.b.to(kFloat64)), {0}, true);
        const Tensor got = summed(c.a, c.b);
        REQUIRE(got.shape() == want.shape());
        const double tol = dtype == kFloat32 ? 1e-4 : 1e-12;
        const std::vector<double> g = got.values_as_double(), w = want.values_as_double();
        for (std::size_t i = 0; i < g.size(); ++i) CHECK(std::abs(g[i] - w[i]) <= tol * (1.0 + std::abs(w[i])));
      }
      const Tensor a = random({3, 150, 120}, dtype, 11), b = random({3, 120, 170}, dtype, 12);
      GemmStateGuard threads;
      set_num_threads(1);
      const std::vector<double> one = summed(a, b).values_as_double();
      set_num_threads(2);
      CHECK(summed(a, b).values_as_double() == one);
    }
  });
}
