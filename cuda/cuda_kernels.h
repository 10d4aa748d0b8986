#pragma once
// The CUDA kernels behind CudaBackend, one family per file. Same contracts as the Backend methods
// in ../tensor/backend.h: outputs preallocated, inputs validated and broadcast by tensor/kernels.cpp,
// every tensor on the same device, which the caller has made current (DeviceGuard). Each launches
// on that device's stream and returns without waiting for the kernel to finish.
#include <cstdint>
#include <vector>

#include "../tensor/backend.h"
#include "../tensor/tensor.h"

namespace mg::cuda {

// cuda_elementwise.cu
void copy_same_device(const Tensor& src, const Tensor& dst);  // any strides, any dtypes
void fill(const Tensor& dst, double value);
void arange(const Tensor& dst, double start, double step);
void unary(UnaryOp op, const Tensor& x, const Tensor& out);
void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out);
void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out);

// cuda_transfer.cpp: copies that cross devices (host <-> device, device <-> device)
void copy_across_devices(const Tensor& src, const Tensor& dst);

// cuda_random.cu
void random(const Tensor& dst, RandomKind kind, uint64_t seed, uint64_t offset, double a, double b);

// cuda_reduce.cu
void reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims, const Tensor& out);
void arg_reduce(ReduceOp op, const Tensor& x, int dim, const Tensor& values, const Tensor& indices);

// cuda_blas.cpp
void matmul(const Tensor& a, const Tensor& b, const Tensor& out);
void matmul_sum(const Tensor& a, const Tensor& b, const Tensor& out);

// cuda_softmax.cu
void softmax(const Tensor& x, int dim, bool log, const Tensor& out);
void softmax_backward(const Tensor& y, const Tensor& grad, int dim, bool log, const Tensor& out);

// cuda_batch_norm.cu
void batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& out,
                const Tensor& mean, const Tensor& var, const Tensor& rstd);
void batch_norm_backward(const Tensor& x, const Tensor& grad, const Tensor& mean, const Tensor& rstd,
                         const Tensor& weight, const Tensor& grad_x, const Tensor& grad_weight,
                         const Tensor& grad_bias);

// cuda_cross_entropy.cu
void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, const Tensor& loss,
                   const Tensor& lse);
void cross_entropy_backward(const Tensor& logits, const Tensor& target, int64_t ignore_index, const Tensor& lse,
                            const Tensor& grad, const Tensor& out);

// cuda_layer_norm.cu
void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& out,
                const Tensor& mean, const Tensor& rstd);

// cuda_adam.cu
void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
               const Tensor& max_exp_avg_sq, const Backend::AdamStep& step);

// cuda_index.cu
void index_select(const Tensor& x, int dim, const Tensor& index, const Tensor& out);
void index_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src);
void gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out);
void scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src);

// cuda_im2col.cu
void im2col(const Tensor& x, const Window2d& window, double pad_value, const Tensor& cols);
void col2im(const Tensor& cols, const Window2d& window, const Tensor& out);

// cuda_pool.cu
void max_pool2d(const Tensor& x, const Window2d& window, const Tensor& out, const Tensor& indices);
void max_unpool2d(const Tensor& grad, const Tensor& indices, const Tensor& out);

}  // namespace mg::cuda
