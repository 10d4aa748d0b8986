#pragma once
// The differentiable ops: each validates its inputs, computes through tensor/'s kernels and,
// when recording, puts a node with its backward formula on the tape. Backward formulas are
// written in these same ops, so gradients are differentiable to any order.
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "../tensor/creation.h"
#include "../tensor/tensor.h"

namespace mg {

// ---- binary, NumPy broadcasting (ops_binary.cpp) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
// a - alpha * b (broadcasting) as one node: a gradient-descent step, with the same values as
// a - b * alpha.
Tensor sub_scaled(const Tensor& a, const Tensor& b, double alpha);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, double exponent);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
// cond != 0 selects a, else b; cond is not differentiated.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max);

// Comparisons give 1 or 0 in the inputs' dtype; they are not differentiable.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);
Tensor operator-(const Tensor& x);
Tensor operator<(const Tensor& a, const Tensor& b);
Tensor operator<=(const Tensor& a, const Tensor& b);
Tensor operator>(const Tensor& a, const Tensor& b);
Tensor operator>=(const Tensor& a, const Tensor& b);
Tensor operator<(const Tensor& a, double b);
Tensor operator<=(const Tensor& a, double b);
Tensor operator>(const Tensor& a, double b);
Tensor operator>=(const Tensor& a, double b);

// ---- unary (ops_unary.cpp) ----
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
enum class GeluApproximation { None, Tanh };
Tensor gelu(const Tensor& x, GeluApproximation approximate = GeluApproximation::None);
Tensor softplus(const Tensor& x);
Tensor erf(const Tensor& x);
Tensor square(const Tensor& x);
Tensor reciprocal(const Tensor& x);
Tensor sign(const Tensor& x);  // not differentiable (zero gradient almost everywhere)

// ---- reductions (ops_reduce.cpp); an empty dims list reduces over all dims ----
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Maximum / minimum values over dims; ties share the gradient equally.
Tensor amax(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor amin(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// (values, int64 indices) along one dim; the gradient flows to the first maximal element.
std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim = false);
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor logsumexp(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
// Variance with Bessel's correction by default (correction = 1), as torch.var.
Tensor var(const Tensor& x, const std::vector<int64_t>& dims = {}, int64_t correction = 1, bool keepdim = false);
// Sums a broadcast gradient back down to shape (the adjoint of expand).
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- linear algebra (ops_linalg.cpp) ----
// NumPy semantics: 1-D operands are promoted, batch dims broadcast.
Tensor matmul(const Tensor& a, const Tensor& b);
// y = x weight^T + bias, one node (ops_affine.cpp; nn::functional::linear is this): weight [out, in] with x [..., in]
// and bias [out], or per task weight [T, out, in] with x [T, ..., in] and bias [T, out]; bias may be undefined.
Tensor affine(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// ---- normalisation (ops_softmax.cpp, ops_layer_norm.cpp, ops_batch_norm.cpp) ----
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// torch.nn.functional.layer_norm: normalises over the last normalized_shape.size() dims (biased
// variance), then scales by weight and shifts by bias, both optional (undefined) and of
// normalized_shape. One fused kernel forward; nn::functional::layer_norm also takes per-task
// [T, ...] parameters.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);
// Batch normalisation with the batch's own statistics (training mode; ops_batch_norm.cpp): x
// [N,C,H,W] normalised per channel over (N,H,W) with the biased variance, or task-batched
// [T,N,C,H,W] per task and channel; then scaled by weight and shifted by bias, both optional and
// [C] ([T,C] for task-batched x). One fused kernel forward and first-order backward.
// nn::functional::batch_norm2d adds running statistics and eval mode on top. When stats is given
// it receives the channels' mean and biased variance ([C] or [T,C]), detached.
struct BatchNormStats {
  Tensor mean, var;
};
Tensor batch_norm(const Tensor& x, const Tensor& weight = Tensor(), const Tensor& bias = Tensor(), double eps = 1e-5,
                  BatchNormStats* stats = nullptr);

// ---- losses (ops_cross_entropy.cpp) ----
// Cross-entropy of class-index targets along the last dim, one loss per row: logits [..., C]
// floating, target int64 of shape logits.shape()[:-1]. Returns logsumexp(row) - row[target],
// 0 where the target is ignore_index; any other target outside [0, C) throws. Fused forward and
// first-order backward; differentiable to any order. nn::cross_entropy is built on it.
Tensor cross_entropy_rows(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100);

// ---- indexing (ops_index.cpp); index tensors are int64 and never differentiated ----
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
// Rows of weight [num, dim] picked by indices of any shape: result is indices.shape + [dim].
Tensor embedding(const Tensor& weight, const Tensor& indices);

// ---- joining (ops_shape.cpp) ----
Tensor concat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);

// ---- views and copies (ops_view.cpp); views share storage with their input ----
Tensor reshape(const Tensor& x, const Shape& shape);  // one dim may be -1; copies only when it must
Tensor view(const Tensor& x, const Shape& shape);     // like reshape, but throws rather than copy
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor select(const Tensor& x, int64_t dim, int64_t index);
Tensor expand(const Tensor& x, const Shape& shape);  // -1 keeps a dim
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor contiguous(const Tensor& x);
Tensor clone(const Tensor& x);
Tensor to_dtype(const Tensor& x, DType dtype);
Tensor to_device(const Tensor& x, Device device);

// ---- convolution and pooling, 2-D, NCHW (ops_conv.cpp, ops_pool.cpp) ----
// unfold2d and fold2d are an adjoint pair, each the other's backward, so derivatives of any
// order stay inside the pair; so are conv2d, conv2d_input_grad and conv2d_weight_grad, each
// one's backward the other two. max_pool2d's backward is max_unpool2d, whose backward is a gather.

// A (height, width) pair of window parameters; one number means both, as in PyTorch.
struct Size2d {
  int64_t h, w;
  Size2d(int64_t both) : h(both), w(both) {}  // implicit: conv2d(x, w, b, 2) reads like PyTorch
  Size2d(int64_t height, int64_t width) : h(height), w(width) {}
};

// torch.nn.functional.unfold: x [N,C,H,W] -> [N, C*kh*kw, L], L the number of window positions
// (row-major over the output grid); row c*kh*kw + i*kw + j holds channel c at kernel offset
// (i, j). Padding reads zeros.
Tensor unfold2d(const Tensor& x, Size2d kernel, Size2d stride = 1, Size2d padding = 0, Size2d dilation = 1);
// torch.nn.functional.fold: cols [N, C*kh*kw, L] -> [N, C, output_size.h, output_size.w], each
// entry added at the position unfold2d read it from (overlaps sum, padding is dropped).
Tensor fold2d(const Tensor& cols, Size2d output_size, Size2d kernel, Size2d stride = 1, Size2d padding = 0,
              Size2d dilation = 1);
// Cross-correlation, as torch.nn.functional.conv2d: x [N,C,H,W], weight [O,C,kh,kw], bias [O]
// (or undefined) -> [N,O,oh,ow]. Saves x and weight (never im2col columns); its backward is
// conv2d_input_grad and conv2d_weight_grad.
// Per task (a task-batched meta-step's fast weights): x [T,N,C,H,W], weight [T,O,C,kh,kw], bias
// [T,O] -> [T,N,O,oh,ow], each task's images convolved with its own weight.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), Size2d stride = 1,
              Size2d padding = 0, Size2d dilation = 1);
// torch.nn.grad.conv2d_input: the gradient of conv2d's input from its output's, grad [N,O,oh,ow]
// -> [N,C,input_size.h,input_size.w] (the input size given, since a stride can map several to
// one output size). Linear in grad and in weight; differentiable in both, to any order.
// Per task as conv2d: grad [T,N,O,oh,ow], weight [T,O,C,kh,kw].
Tensor conv2d_input_grad(const Tensor& grad, const Tensor& weight, Size2d input_size, Size2d stride = 1,
                         Size2d padding = 0, Size2d dilation = 1);
// torch.nn.grad.conv2d_weight: the gradient of conv2d's weight from its output's, grad
// [N,O,oh,ow] and the input x [N,C,H,W] -> [O,C,kernel.h,kernel.w], summed over the images.
// Linear in grad and in x; differentiable in both, to any order. Per task: grad [T,N,O,oh,ow],
// x [T,N,C,H,W] -> [T,O,C,kh,kw].
Tensor conv2d_weight_grad(const Tensor& grad, const Tensor& x, Size2d kernel, Size2d stride = 1, Size2d padding = 0,
                          Size2d dilation = 1);
// torch.nn.functional.max_pool2d (ceil_mode off): the maximum of each window, straight from the
// planes; padding (at most half the kernel) never wins, as if it held -inf. The gradient goes to
// the first maximal element of each window in row-major order, as PyTorch's does. Without a
// stride, the stride is the kernel (an overload rather than an optional, so that
// max_pool2d(x, {2, 3}, {1, 2}) reads as it should).
Tensor max_pool2d(const Tensor& x, Size2d kernel);
Tensor max_pool2d(const Tensor& x, Size2d kernel, Size2d stride, Size2d padding = 0, Size2d dilation = 1);
// max_pool2d(..., return_indices=True): also each maximum's int64 position y * W + x in its
// plane, [N,C,oh,ow], the indices max_unpool2d takes.
std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& x, Size2d kernel, Size2d stride, Size2d padding = 0,
                                                  Size2d dilation = 1);
// torch.nn.functional.max_unpool2d: zeros [N,C,output_size] with x [N,C,h,w] placed at indices
// (positions in the plane, [N,C,h,w] int64; repeated positions sum). Indices outside the plane
// throw.
Tensor max_unpool2d(const Tensor& x, const Tensor& indices, Size2d output_size);

}  // namespace mg
