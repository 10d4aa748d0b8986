#pragma once
// The CPU matrix products that calls on one thread run, as shapes and operand layouts: a
// workload's products can then be replayed alone, through metagrad's GEMM or another library's,
// to see how much of a step they take (bench/bench_meta does this for the meta-steps).
#include <compare>
#include <cstdint>
#include <vector>

namespace mg {

// How one operand's matrices lie in memory.
enum class MatrixLayout : uint8_t {
  RowMajor,     // unit stride along a row
  ColumnMajor,  // unit stride down a column (a transposed view of a row-major matrix)
  Strided,      // neither
};

// One call of the CPU GEMM: out[b] = a[b] @ b[b], a [batch, m, k], b [batch, k, n] (or, with
// sum_batch, out = the sum over b of those products, out [m, n]). An operand with a batch stride
// of 0 is the same matrix for every b (a weight shared by the batch).
struct MatmulCall {
  int64_t batch = 0, m = 0, n = 0, k = 0;
  MatrixLayout a_layout = MatrixLayout::RowMajor, b_layout = MatrixLayout::RowMajor;
  bool a_shared = false, b_shared = false;
  bool sum_batch = false;
  bool float64 = false;

  friend auto operator<=>(const MatmulCall&, const MatmulCall&) = default;
};

// While one of these lives, every CPU matrix product called on the constructing thread (products
// inside convolutions included) is appended to calls(). Traces nest: the innermost records.
class MatmulTrace {
 public:
  MatmulTrace();
  ~MatmulTrace();
  MatmulTrace(const MatmulTrace&) = delete;
  MatmulTrace& operator=(const MatmulTrace&) = delete;

  const std::vector<MatmulCall>& calls() const { return calls_; }

 private:
  friend void record_matmul_call(const MatmulCall& call);
  std::vector<MatmulCall> calls_;
  MatmulTrace* outer_;
};

// Appends call to this thread's innermost live trace, if any (called by the CPU GEMM).
void record_matmul_call(const MatmulCall& call);

}  // namespace mg
