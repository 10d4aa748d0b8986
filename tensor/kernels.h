#pragma once
// Raw tensor ops: validate, compute output shape, allocate, dispatch to the device's Backend.
// No autograd here: autograd/ wraps these into differentiable ops and records their nodes.
// Every function throws mg::Error naming the op, shapes, dtypes and devices on bad input.
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "backend.h"
#include "tensor.h"

namespace mg::kernels {

// Inputs must share dtype and device; names them in the error otherwise.
void check_same_dtype(std::string_view op, const Tensor& a, const Tensor& b);
void check_same_device(std::string_view op, const Tensor& a, const Tensor& b);
void check_defined(std::string_view op, const Tensor& t, std::string_view what = "input");
// The first entry of an int64 index tensor outside [0, size): its value and its flat position in
// row-major order, found in one pass over the values (no kernel launches, no allocation for a
// contiguous CPU tensor); nullopt when all are inside, and while a graph is captured on the
// index's device (nothing can be read on the host then).
struct IndexOutside {
  int64_t value, position;
};
std::optional<IndexOutside> first_index_outside(const Tensor& index, int64_t size);

// A view of x with shape broadcast to shape (stride 0 on broadcast dims); throws if impossible.
Tensor expand_to(std::string_view op, const Tensor& x, const Shape& shape);
// A geometry-only view; bounds are checked against the storage.
Tensor as_strided(const Tensor& x, const Shape& shape, const Strides& strides, int64_t offset);

Tensor contiguous(const Tensor& x);                // x itself when already contiguous
Tensor clone(const Tensor& x);                     // always a fresh contiguous copy
Tensor cast(const Tensor& x, DType dtype);         // x itself when dtype matches
Tensor to_device(const Tensor& x, Device device);  // x itself when device matches
void copy_(const Tensor& dst, const Tensor& src);  // src broadcast to dst's shape
void fill_(const Tensor& dst, double value);

// A 0-d tensor holding value, with dtype and device taken from like.
Tensor scalar_like(double value, const Tensor& like);

Tensor unary(UnaryOp op, const Tensor& x);                           // floating dtypes (Neg/Abs/Sign/Square also int64)
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);        // broadcasting
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);  // broadcasting over all three

// dims empty = all dims. Sum over int64 is allowed; Max/Min of an empty reduction throws.
Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim);
// (values, int64 indices) of max or min along dim.
std::pair<Tensor, Tensor> arg_reduce(ReduceOp op, const Tensor& x, int64_t dim, bool keepdim);

// NumPy matmul: 1-D operands are promoted and the added dim removed after; batch dims broadcast.
Tensor matmul(const Tensor& a, const Tensor& b);

Tensor softmax(const Tensor& x, int64_t dim, bool log);
// The first-order gradient of softmax (log: log_softmax) along dim at output y for gradient g.
Tensor softmax_backward(const Tensor& y, const Tensor& grad, int64_t dim, bool log);

// Layer normalisation over the last normalized_dims dims of x; weight and bias (optional: an
// undefined tensor) have exactly those dims. Returns out (x's shape), and the per-row mean and
// rstd = 1 / sqrt(biased variance + eps), each of x's shape with the normalised dims set to 1.
struct LayerNormResult {
  Tensor out, mean, rstd;
};
LayerNormResult layer_norm(const Tensor& x, int64_t normalized_dims, const Tensor& weight, const Tensor& bias,
                           double eps);

// Batch normalisation with the batch's statistics (kernels_batch_norm.cpp): x is [N,C,H,W],
// normalised per channel over (N, H, W), or task-batched [T,N,C,H,W], per task and channel over
// (N, H, W). weight and bias (optional) are [C], or [T,C] for task-batched input. Returns out
// (x's shape), and the mean, biased variance and rstd = 1 / sqrt(var + eps) of each channel:
// [C], or [T,C].
struct BatchNormResult {
  Tensor out, mean, var, rstd;
};
BatchNormResult batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);
// Its first-order gradients for an output gradient grad (x's shape), from the forward's mean and
// rstd: (input, weight, bias), each computed only where its need_* flag is set and undefined
// otherwise (the weight's also needs weight defined).
struct BatchNormGrads {
  Tensor x, weight, bias;
};
BatchNormGrads batch_norm_backward(const Tensor& x, const Tensor& grad, const Tensor& mean, const Tensor& rstd,
                                   const Tensor& weight, bool need_x, bool need_weight, bool need_bias);

// Cross-entropy of class-index targets along the last dim of logits [..., C] (kernels_cross_entropy.cpp):
// target is int64 of shape logits.shape()[:-1], each entry ignore_index or in [0, C) (throws
// naming the first that is neither). Returns the per-row loss logsumexp(row) - row[target], 0
// where the target is ignore_index, and the per-row logsumexp (every row), both of target's
// shape and logits' dtype.
struct CrossEntropyResult {
  Tensor loss, logsumexp;
};
CrossEntropyResult cross_entropy_rows(const Tensor& logits, const Tensor& target, int64_t ignore_index);
// Its first-order gradient with respect to logits for a gradient grad of the loss:
// grad[..., None] * (softmax(logits) - one_hot(target)), zero on rows whose target is ignored;
// logsumexp is the forward's.
Tensor cross_entropy_rows_backward(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                                   const Tensor& logsumexp, const Tensor& grad);

// One in-place Adam step on param, exp_avg, exp_avg_sq (and max_exp_avg_sq when step.amsgrad):
// all of param's shape, dtype and device, contiguous; grad of the same shape and dtype.
void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
               const Tensor& max_exp_avg_sq, const Backend::AdamStep& step);

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// Returns x with src added at rows index along dim (out of place).
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
// check_range reads the indices on the host and throws for one outside x's dim; indices an op
// made itself (max-pooling's positions) need no check.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index, bool check_range = true);
// Returns x with src scattered-added at index along dim (out of place).
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);

Tensor concat(const std::vector<Tensor>& tensors, int64_t dim);

// 2-D sliding windows over NCHW tensors (kernels_window.cpp). op is the name errors give: the
// caller's own, e.g. "conv2d" or "max_pool2d", so a user sees the function they called.
// Throws unless kernel, stride and dilation are >= 1 and padding >= 0.
void check_window(std::string_view op, const Window2d& window);
// unfold: x [N,C,H,W] -> [N, C*kh*kw, oh*ow]; positions in the padding read pad_value.
Tensor im2col(const Tensor& x, const Window2d& window, double pad_value = 0.0, std::string_view op = "unfold2d");
// fold: cols [N, C*kh*kw, L] -> [N, C, height, width], summing overlapping entries; L must be
// the number of window positions over a height x width input.
Tensor col2im(const Tensor& cols, int64_t height, int64_t width, const Window2d& window,
              std::string_view op = "fold2d");

// Max pooling of x [N,C,H,W] straight from the planes (no im2col): each window's maximum and its
// int64 position y * W + x in its plane, both [N,C,oh,ow]. The padding (at most half the kernel)
// never wins; the first maximum in window order wins ties, a NaN wins over numbers.
std::pair<Tensor, Tensor> max_pool2d(const Tensor& x, const Window2d& window, std::string_view op = "max_pool2d");
// Its adjoint: zeros [N,C,height,width] with x [N,C,oh,ow] added at indices [N,C,oh,ow] (int64
// positions in the plane). check_range reads the indices on the host and throws for one outside
// [0, height * width); indices straight from max_pool2d need no check.
Tensor max_unpool2d(const Tensor& x, const Tensor& indices, int64_t height, int64_t width, bool check_range,
                    std::string_view op = "max_unpool2d");

// Convolution (cross-correlation) as im2col + GEMM, a group of images at a time so that at most
// about column_bytes of im2col columns exist at once (kernels_conv.cpp; one image per group when
// a single image's columns exceed it). x [N,C,H,W], weight [O,C,kh,kw] -> [N,O,oh,ow], plus bias [O]
// per channel when defined (added to each group's output while it is in cache). 2 MiB: the
// columns are written once and read once by the GEMM's packing, which reaches them in L2 or the
// near L3 (Omniglot's 64-channel 14x14 layer ran its three kernels 10-15% faster than with 8 MiB).
inline constexpr int64_t kConvColumnBytes = int64_t{2} << 20;
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Window2d& window,
              int64_t column_bytes = kConvColumnBytes);
// Its gradients for an output gradient grad [N,O,oh,ow]: the input's [N,C,height,width] (W^T grad,
// folded) and the weight's [O,C,kh,kw] (grad times the input's columns, summed over the images).
Tensor conv2d_input_grad(const Tensor& grad, const Tensor& weight, int64_t height, int64_t width,
                         const Window2d& window, int64_t column_bytes = kConvColumnBytes);
Tensor conv2d_weight_grad(const Tensor& grad, const Tensor& x, const Window2d& window,
                          int64_t column_bytes = kConvColumnBytes);
// The same per task, each task's images with its own weight (a task-batched meta-step's fast
// weights): x [T,N,C,H,W], weight [T,O,C,kh,kw], bias [T,O] -> [T,N,O,oh,ow], and the gradients
// [T,N,C,height,width] and [T,O,C,kh,kw] for grad [T,N,O,oh,ow]. A loop over the tasks of the
// kernels above: as there, at most one group of images has its columns at once.
Tensor conv2d_per_task(const Tensor& x, const Tensor& weight, const Tensor& bias, const Window2d& window,
                       int64_t column_bytes = kConvColumnBytes);
Tensor conv2d_per_task_input_grad(const Tensor& grad, const Tensor& weight, int64_t height, int64_t width,
                                  const Window2d& window, int64_t column_bytes = kConvColumnBytes);
Tensor conv2d_per_task_weight_grad(const Tensor& grad, const Tensor& x, const Window2d& window,
                                   int64_t column_bytes = kConvColumnBytes);

}  // namespace mg::kernels
