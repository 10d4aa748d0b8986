#include "cuda_check.h"

namespace mg::cuda {

void throw_cuda_error(const char* op, const char* call, cudaError_t err) {
  // A launch or argument error is sticky only for the calling thread's last-error slot: clear it
  // so the next, unrelated call does not report it again.
  (void)cudaGetLastError();
  MG_FAIL(op, ": CUDA error ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ") in ", call);
}

void throw_cublas_error(const char* op, const char* call, cublasStatus_t status) {
  MG_FAIL(op, ": cuBLAS error ", cublasGetStatusName(status), " (", cublasGetStatusString(status), ") in ", call);
}

}  // namespace mg::cuda
