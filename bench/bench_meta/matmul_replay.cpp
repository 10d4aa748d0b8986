#include "matmul_replay.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#ifdef MG_BENCH_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace mg_bench {

using mg::MatmulCall;
using mg::MatrixLayout;
using mg::Tensor;

namespace {

// [batch, rows, cols] in the given layout (a shared operand is one matrix expanded over the
// batch, as the step's broadcast weights are), filled with values of the usual scale.
Tensor operand(int64_t batch, int64_t rows, int64_t cols, MatrixLayout layout, bool shared, mg::DType dtype,
               mg::Generator& gen) {
  const int64_t stored = shared ? 1 : batch;
  Tensor t;
  switch (layout) {
    case MatrixLayout::RowMajor:
      t = mg::randn({stored, rows, cols}, dtype, mg::kCPU, &gen);
      break;
    case MatrixLayout::ColumnMajor:
      t = mg::randn({stored, cols, rows}, dtype, mg::kCPU, &gen).transpose(1, 2);
      break;
    case MatrixLayout::Strided:
      t = mg::randn({stored, rows, 2 * cols}, dtype, mg::kCPU, &gen).slice(2, 0, 2 * cols, 2);
      break;
  }
  return shared ? t.expand({batch, rows, cols}) : t;
}

}  // namespace

struct MatmulReplay::Operands {
  Tensor a, b, out;
  Tensor a_dense, b_dense;  // row-major copies of strided operands, for BLAS
};

MatmulReplay::MatmulReplay(Workload workload, Path path) {
  std::unique_ptr<MetaStep> step = make_mg_step(workload, path);
  {
    mg::MatmulTrace trace;
    step->run();
    calls_ = trace.calls();
  }
  for (const MatmulCall& call : calls_) operands_of_call_.push_back(&operands_for(call));
}

MatmulReplay::~MatmulReplay() = default;

double MatmulReplay::flops() const {
  double total = 0;
  for (const MatmulCall& c : calls_)
    total += 2.0 * static_cast<double>(c.batch) * static_cast<double>(c.m) * static_cast<double>(c.n) *
             static_cast<double>(c.k);
  return total;
}

const MatmulReplay::Operands& MatmulReplay::operands_for(const MatmulCall& c) {
  auto& slot = operands_[c];
  if (!slot) {
    mg::NoGradGuard no_grad;
    mg::Generator gen(static_cast<uint64_t>(operands_.size()));
    const mg::DType dtype = c.float64 ? mg::kFloat64 : mg::kFloat32;
    slot = std::make_unique<Operands>();
    slot->a = operand(c.batch, c.m, c.k, c.a_layout, c.a_shared, dtype, gen);
    slot->b = operand(c.batch, c.k, c.n, c.b_layout, c.b_shared, dtype, gen);
    slot->out = mg::empty({c.sum_batch ? 1 : c.batch, c.m, c.n}, dtype, mg::kCPU);
    if (c.a_layout == MatrixLayout::Strided) slot->a_dense = slot->a.contiguous();
    if (c.b_layout == MatrixLayout::Strided) slot->b_dense = slot->b.contiguous();
  }
  return *slot;
}

void MatmulReplay::run_mg_call(std::size_t i) {
  mg::Backend& cpu = mg::backend_for(mg::kCPU);
  const Operands& o = *operands_of_call_[i];
  if (calls_[i].sum_batch) {
    cpu.matmul_sum(o.a, o.b, o.out);
  } else {
    cpu.matmul(o.a, o.b, o.out);
  }
}

void MatmulReplay::run_mg() {
  for (std::size_t i = 0; i < calls_.size(); ++i) run_mg_call(i);
}

#ifdef MG_BENCH_HAVE_OPENBLAS
namespace {

// One operand as BLAS sees it: the first matrix, the distance to the next (0 when shared), its
// leading dimension and whether it is transposed.
struct BlasMatrix {
  const char* data;
  int64_t batch_stride;
  int lead;
  CBLAS_TRANSPOSE trans;
};

BlasMatrix blas_matrix(const Tensor& t, const Tensor& dense, int64_t rows, int64_t cols, bool shared,
                       MatrixLayout layout) {
  const bool column_major = layout == MatrixLayout::ColumnMajor;
  const Tensor& src = dense.defined() ? dense : t;
  const int64_t element = src.dtype() == mg::kFloat64 ? 8 : 4;
  const char* data = src.dtype() == mg::kFloat64 ? reinterpret_cast<const char*>(src.data_ptr<double>())
                                                 : reinterpret_cast<const char*>(src.data_ptr<float>());
  return {data, shared ? 0 : rows * cols * element, static_cast<int>(column_major ? rows : cols),
          column_major ? CblasTrans : CblasNoTrans};
}

template <typename T>
void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, const char* a, int lda,
               const char* b, int ldb, T beta, T* c) {
  const int M = static_cast<int>(m), N = static_cast<int>(n), K = static_cast<int>(k);
  if constexpr (sizeof(T) == 4) {
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, 1.0f, reinterpret_cast<const float*>(a), lda,
                reinterpret_cast<const float*>(b), ldb, beta, c, N);
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, 1.0, reinterpret_cast<const double*>(a), lda,
                reinterpret_cast<const double*>(b), ldb, beta, c, N);
  }
}

template <typename T>
void blas_call(const MatmulCall& c, const BlasMatrix& A, const BlasMatrix& B, T* out) {
  // A shared right operand and a batch of row-major A matrices one after another: one product
  // of batch * m rows.
  if (!c.sum_batch && c.b_shared && !c.a_shared && A.trans == CblasNoTrans && A.lead == c.k)
    return blas_gemm<T>(A.trans, B.trans, c.batch * c.m, c.n, c.k, A.data, A.lead, B.data, B.lead, T(0), out);
  // A summed batch of A^T-layout [k, m] and row-major [k, n] matrices: one product of depth
  // batch * k (a weight's gradient over a batch of inputs).
  if (c.sum_batch && !c.a_shared && !c.b_shared && A.trans == CblasTrans && B.trans == CblasNoTrans && A.lead == c.m &&
      B.lead == c.n)
    return blas_gemm<T>(A.trans, B.trans, c.m, c.n, c.batch * c.k, A.data, A.lead, B.data, B.lead, T(0), out);
  for (int64_t i = 0; i < c.batch; ++i)
    blas_gemm<T>(A.trans, B.trans, c.m, c.n, c.k, A.data + i * A.batch_stride, A.lead, B.data + i * B.batch_stride,
                 B.lead, c.sum_batch && i > 0 ? T(1) : T(0), out + (c.sum_batch ? 0 : i * c.m * c.n));
}

}  // namespace

void MatmulReplay::run_openblas_call(std::size_t i) {
  const MatmulCall& c = calls_[i];
  const Operands& o = *operands_of_call_[i];
  const BlasMatrix A = blas_matrix(o.a, o.a_dense, c.m, c.k, c.a_shared, c.a_layout);
  const BlasMatrix B = blas_matrix(o.b, o.b_dense, c.k, c.n, c.b_shared, c.b_layout);
  if (c.float64) {
    blas_call<double>(c, A, B, o.out.data_ptr<double>());
  } else {
    blas_call<float>(c, A, B, o.out.data_ptr<float>());
  }
}

void MatmulReplay::run_openblas() {
  for (std::size_t i = 0; i < calls_.size(); ++i) run_openblas_call(i);
}

double MatmulReplay::max_relative_difference() {
  double worst = 0;
  for (std::size_t i = 0; i < calls_.size(); ++i) {
    run_mg_call(i);
    const std::vector<double> ours = operands_of_call_[i]->out.values_as_double();
    run_openblas_call(i);
    const std::vector<double> theirs = operands_of_call_[i]->out.values_as_double();
    double scale = 1e-30, diff = 0;
    for (std::size_t j = 0; j < ours.size(); ++j) {
      scale = std::max(scale, std::abs(theirs[j]));
      diff = std::max(diff, std::abs(ours[j] - theirs[j]));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}
#endif

namespace {

const char* layout_letter(MatrixLayout layout) {
  switch (layout) {
    case MatrixLayout::RowMajor:
      return "N";
    case MatrixLayout::ColumnMajor:
      return "T";
    case MatrixLayout::Strided:
      return "S";
  }
  return "?";
}

template <typename F>
double best_ms(F&& f) {
  double best = 1e300;
  for (int rep = 0; rep < 5; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

}  // namespace

void MatmulReplay::print_shape_table() {
  std::map<const Operands*, std::vector<std::size_t>> groups;
  for (std::size_t i = 0; i < calls_.size(); ++i) groups[operands_of_call_[i]].push_back(i);
  std::printf("%6s %5s %5s %5s %3s %6s %5s %6s %9s %9s %9s\n", "batch", "m", "n", "k", "a b", "shared", "sum", "calls",
              "GFLOP", "mg us", "blas us");
  for (const auto& [operands, indices] : groups) {
    const MatmulCall& c = calls_[indices.front()];
    const double gflop = 2e-9 * static_cast<double>(c.batch) * static_cast<double>(c.m) * static_cast<double>(c.n) *
                         static_cast<double>(c.k) * static_cast<double>(indices.size());
    const double mg_ms = best_ms([&] {
      for (std::size_t i : indices) run_mg_call(i);
    });
    double blas_ms = 0;
#ifdef MG_BENCH_HAVE_OPENBLAS
    blas_ms = best_ms([&] {
      for (std::size_t i : indices) run_openblas_call(i);
    });
#endif
    std::printf("%6lld %5lld %5lld %5lld %s %s %3s%3s %5s %6zu %9.4f %9.1f %9.1f\n", static_cast<long long>(c.batch),
                static_cast<long long>(c.m), static_cast<long long>(c.n), static_cast<long long>(c.k),
                layout_letter(c.a_layout), layout_letter(c.b_layout), c.a_shared ? "a" : "-", c.b_shared ? "b" : "-",
                c.sum_batch ? "sum" : "", indices.size(), gflop, 1e3 * mg_ms, 1e3 * blas_ms);
  }
}

}  // namespace mg_bench
