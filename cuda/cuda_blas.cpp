// matmul through cuBLAS. cuBLAS is column-major and metagrad row-major: a row-major [M,N] matrix
// is a column-major [N,M] one with the same bytes, so out = a @ b is computed as
// out^T = b^T @ a^T, i.e. cuBLAS's C (N x M) = B' (N x K) * A' (K x M) with B' and A' being b and
// a read in place. An operand whose rows or columns are unit-stride is passed as it is (with a
// transpose flag for the other layout); any other layout is copied once to a dense one.
// Batches: one strided-batched call, with batch stride 0 for a broadcast operand.
#include <atomic>
#include <type_traits>

#include "cuda_blas.h"
#include "cuda_check.h"
#include "cuda_context.h"
#include "cuda_kernels.h"

namespace mg::cuda {
namespace {

std::atomic<bool>& tf32_allowed() {
  static std::atomic<bool> allowed{false};
  return allowed;
}

// A [B, R, C] row-major operand as cuBLAS sees it: the column-major C x R matrix of its bytes,
// transposed or not, with its leading dimension and batch stride (elements).
struct BlasOperand {
  Tensor tensor;  // what the pointer comes from (t itself or a dense copy)
  cublasOperation_t op = CUBLAS_OP_N;
  int64_t ld = 1;
  int64_t batch_stride = 0;
};

BlasOperand blas_operand(const Tensor& t) {
  const int64_t rows = t.shape()[1], cols = t.shape()[2];
  const int64_t row_stride = t.strides()[1], col_stride = t.strides()[2];
  BlasOperand o;
  o.tensor = t;
  o.batch_stride = t.shape()[0] == 1 ? 0 : t.strides()[0];
  // Row-major with unit columns: column-major cols x rows, no transpose. A dim of size 1 may
  // carry any stride, so it never disqualifies a layout; ld only has to be at least the
  // number of stored rows.
  if (col_stride == 1 || cols == 1) {
    if (rows == 1 || row_stride >= std::max<int64_t>(cols, 1)) {
      o.op = CUBLAS_OP_N;
      o.ld = rows == 1 ? std::max<int64_t>(cols, 1) : row_stride;
      return o;
    }
  }
  // Column-major storage (a transposed view): cuBLAS reads it transposed.
  if (row_stride == 1 || rows == 1) {
    if (cols == 1 || col_stride >= std::max<int64_t>(rows, 1)) {
      o.op = CUBLAS_OP_T;
      o.ld = cols == 1 ? std::max<int64_t>(rows, 1) : col_stride;
      return o;
    }
  }
  // Anything else (a sliced inner dim, overlapping strides): one dense copy.
  Tensor dense = Tensor::empty(t.shape(), t.dtype(), t.device());
  copy_same_device(t, dense);
  o.tensor = dense;
  o.op = CUBLAS_OP_N;
  o.ld = std::max<int64_t>(cols, 1);
  o.batch_stride = t.shape()[0] == 1 ? 0 : rows * cols;
  return o;
}

int to_int(int64_t v, const char* what) {
  MG_CHECK(v <= INT32_MAX, "matmul: ", what, " ", v, " exceeds cuBLAS's 32-bit limit");
  return static_cast<int>(v);
}

}  // namespace

void set_allow_tf32(bool allow) { tf32_allowed().store(allow, std::memory_order_relaxed); }
bool allow_tf32() { return tf32_allowed().load(std::memory_order_relaxed); }

void matmul(const Tensor& a, const Tensor& b, const Tensor& out) {
  const int64_t batch = out.shape()[0], m = out.shape()[1], n = out.shape()[2], k = a.shape()[2];
  const BlasOperand A = blas_operand(a), B = blas_operand(b);
  cublasHandle_t handle = cublas_for(out.device().index);
  const bool f32 = out.dtype() == kFloat32;
  MG_CHECK(f32 || out.dtype() == kFloat64, "matmul: dtype ", out.dtype(), " is not supported on CUDA");
  const cudaDataType_t type = f32 ? CUDA_R_32F : CUDA_R_64F;
  const cublasComputeType_t compute =
      f32 ? (allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F) : CUBLAS_COMPUTE_64F;
  // alpha and beta in the compute type's precision.
  const float alpha_f = 1.0f, beta_f = 0.0f;
  const double alpha_d = 1.0, beta_d = 0.0;
  const void* alpha = f32 ? static_cast<const void*>(&alpha_f) : static_cast<const void*>(&alpha_d);
  const void* beta = f32 ? static_cast<const void*>(&beta_f) : static_cast<const void*>(&beta_d);
  // C (n x m, ld n) = B' (n x k) * A' (k x m).
  MG_CUBLAS_CHECK("matmul", cublasGemmStridedBatchedEx(
                                handle, B.op, A.op, to_int(n, "size"), to_int(m, "size"), to_int(k, "size"), alpha,
                                B.tensor.raw_data(), type, to_int(B.ld, "leading dimension"), B.batch_stride,
                                A.tensor.raw_data(), type, to_int(A.ld, "leading dimension"), A.batch_stride, beta,
                                out.raw_data(), type, to_int(std::max<int64_t>(n, 1), "size"), m * n,
                                to_int(batch, "batch count"), compute, CUBLAS_GEMM_DEFAULT));
}

void matmul_sum(const Tensor& a, const Tensor& b, const Tensor& out) {
  // cuBLAS has no GEMM that reduces over the batch: each product, then their sum.
  const int64_t batch = std::max(a.shape()[0], b.shape()[0]);
  const Tensor products = Tensor::empty({batch, out.shape()[1], out.shape()[2]}, out.dtype(), out.device());
  matmul(a, b, products);
  reduce(ReduceOp::Sum, products, {0}, out);
}

}  // namespace mg::cuda
