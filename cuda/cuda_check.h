#pragma once
// Every CUDA runtime and cuBLAS call goes through one of these: a failure becomes an mg::Error
// naming the op that made the call and the library's own description of the error.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "../tensor/error.h"

namespace mg::cuda {

[[noreturn]] void throw_cuda_error(const char* op, const char* call, cudaError_t err);
[[noreturn]] void throw_cublas_error(const char* op, const char* call, cublasStatus_t status);

}  // namespace mg::cuda

// MG_CUDA_CHECK("matmul", cudaMemcpyAsync(...));
#define MG_CUDA_CHECK(op, call)                                                             \
  do {                                                                                      \
    const cudaError_t mg_cuda_err_ = (call);                                                \
    if (mg_cuda_err_ != cudaSuccess) ::mg::cuda::throw_cuda_error(op, #call, mg_cuda_err_); \
  } while (0)

#define MG_CUBLAS_CHECK(op, call)                                                                                 \
  do {                                                                                                            \
    const cublasStatus_t mg_cublas_status_ = (call);                                                              \
    if (mg_cublas_status_ != CUBLAS_STATUS_SUCCESS) ::mg::cuda::throw_cublas_error(op, #call, mg_cublas_status_); \
  } while (0)

// After a kernel launch: a bad configuration shows up here; faults inside the kernel show up at
// the next synchronising call, which is checked too.
#define MG_CUDA_CHECK_LAUNCH(op) MG_CUDA_CHECK(op, cudaGetLastError())
