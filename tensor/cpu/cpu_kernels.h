#pragma once
// The CPU kernels behind CpuBackend, one family per file. Same contracts as the Backend methods
// in ../backend.h: outputs preallocated, inputs validated and broadcast by tensor/kernels.cpp.
#include <cstdint>
#include <vector>

#include "../backend.h"
#include "../tensor.h"

namespace mg::cpu {

// cpu_elementwise.cpp
void copy(const Tensor& src, const Tensor& dst);
void fill(const Tensor& dst, double value);
void arange(const Tensor& dst, double start, double step);
void unary(UnaryOp op, const Tensor& x, const Tensor& out);
void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out);
void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out);

// cpu_random.cpp
void random(const Tensor& dst, RandomKind kind, uint64_t seed, uint64_t offset, double a, double b);

// cpu_reduce.cpp
void reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims, const Tensor& out);
void arg_reduce(ReduceOp op, const Tensor& x, int dim, const Tensor& values, const Tensor& indices);

// cpu_gemm.cpp
void matmul(const Tensor& a, const Tensor& b, const Tensor& out);
void matmul_sum(const Tensor& a, const Tensor& b, const Tensor& out);

// cpu_softmax.cpp
void softmax(const Tensor& x, int dim, bool log, const Tensor& out);
void softmax_backward(const Tensor& y, const Tensor& grad, int dim, bool log, const Tensor& out);

// cpu_layer_norm.cpp
void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& out,
                const Tensor& mean, const Tensor& rstd);

// cpu_batch_norm.cpp
void batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& out,
                const Tensor& mean, const Tensor& var, const Tensor& rstd);
void batch_norm_backward(const Tensor& x, const Tensor& grad, const Tensor& mean, const Tensor& rstd,
                         const Tensor& weight, const Tensor& grad_x, const Tensor& grad_weight,
                         const Tensor& grad_bias);

// cpu_cross_entropy.cpp
void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, const Tensor& loss,
                   const Tensor& lse);
void cross_entropy_backward(const Tensor& logits, const Tensor& target, int64_t ignore_index, const Tensor& lse,
                            const Tensor& grad, const Tensor& out);

// cpu_adam.cpp
void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
               const Tensor& max_exp_avg_sq, const Backend::AdamStep& step);

// cpu_index.cpp
void index_select(const Tensor& x, int dim, const Tensor& index, const Tensor& out);
void index_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src);
void gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out);
void scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src);

// cpu_im2col.cpp
void im2col(const Tensor& x, const Window2d& window, double pad_value, const Tensor& cols);
void col2im(const Tensor& cols, const Window2d& window, const Tensor& out);

// cpu_winograd.cpp: a 3x3, stride-1, padding-1, dilation-1 convolution (out [N,O,H,W] contiguous) and its
// weight gradient (returned [O,C,3,3]) by Winograd's F(2x2, 3x3) or F(4x4, 3x3) (the tile side
// winograd_tile_size picks for the image), images in groups whose transformed input fits
// column_bytes. Taken for float32 and float64 with at least kWinogradMinChannels input and
// output channels, on images its tiles cover with at most 3/4 of the direct convolution's
// products (2x2 and larger; not 1x1 or a single row of pixels).
inline constexpr int64_t kWinogradMinChannels = 8;
bool winograd_conv3x3_applies(const Tensor& x, int64_t out_channels);
int64_t winograd_tile_size(int64_t height, int64_t width);  // 2 or 4
void winograd_conv3x3(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t column_bytes,
                      const Tensor& out);
Tensor winograd_conv3x3_weight_grad(const Tensor& grad, const Tensor& x, int64_t column_bytes);

// cpu_pool.cpp
void max_pool2d(const Tensor& x, const Window2d& window, const Tensor& out, const Tensor& indices);
void max_unpool2d(const Tensor& grad, const Tensor& indices, const Tensor& out);

// Shorthand used by the kernels.
inline char* bytes(const Tensor& t) { return static_cast<char*>(t.raw_data()); }

}  // namespace mg::cpu
