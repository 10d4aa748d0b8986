#pragma once
// The dispatch table: one Backend per device type. Every raw kernel goes through here,
// so a second device (CUDA) plugs in by registering its Backend; nothing else changes.
//
// Conventions for all kernels: output tensors are allocated by the caller (tensor/kernels.cpp)
// with their final shape and dtype; inputs arrive already broadcast to the shape the kernel
// expects (expanded views with stride 0), with any strides and offsets. Kernels never throw
// for shape reasons: kernels.cpp validates everything first.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "device.h"
#include "device_graph.h"
#include "random_kind.h"

namespace mg {

class Tensor;

enum class UnaryOp : uint8_t {
  Neg, Exp, Log, Sqrt, Rsqrt, Abs, Sin, Cos, Tanh, Sigmoid, Relu,
  GeluTanh, GeluErf, Softplus, Erf, Sign, Reciprocal, Square,
  Count
};
enum class BinaryOp : uint8_t {
  Add, Sub, Mul, Div, Pow, Maximum, Minimum,
  MulPositiveMask,  // a * (b > 0 ? 1 : 0): relu's backward in one pass, without the mask
  Eq, Ne, Lt, Le, Gt, Ge,  // produce 1 or 0 in the inputs' dtype
  Count
};
enum class ReduceOp : uint8_t { Sum, Max, Min, Count };

// A 2-D sliding window over the last two dims of an NCHW tensor (unfold/fold, convolution,
// pooling): kernel, stride, padding and dilation per axis, all validated by tensor/kernels.cpp.
struct Window2d {
  int64_t kh = 1, kw = 1;  // kernel
  int64_t sh = 1, sw = 1;  // stride
  int64_t ph = 0, pw = 0;  // zero padding on both sides
  int64_t dh = 1, dw = 1;  // dilation
  // Number of window positions along each axis of an h x w input; 0 when the dilated kernel
  // does not fit in the padded input.
  int64_t out_h(int64_t h) const { return positions(h + 2 * ph - dh * (kh - 1) - 1, sh); }
  int64_t out_w(int64_t w) const { return positions(w + 2 * pw - dw * (kw - 1) - 1, sw); }
  static int64_t positions(int64_t span, int64_t stride) { return span < 0 ? 0 : span / stride + 1; }
};

const char* unary_op_name(UnaryOp op);
const char* binary_op_name(BinaryOp op);
const char* reduce_op_name(ReduceOp op);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  virtual void* allocate(std::size_t nbytes, Device device) = 0;
  virtual void deallocate(void* data, std::size_t nbytes, Device device) = 0;

  // dst[i] = src[i]; same shape, any strides, converting dtype when they differ.
  // src may live on another device (for .to(device)); the backend of dst's device is called.
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;
  virtual void fill(const Tensor& dst, double value) = 0;
  // dst[i] = start + i * step, dst contiguous.
  virtual void arange(const Tensor& dst, double start, double step) = 0;
  // Counter-based Philox 4x32-10: element i of a contiguous dst draws from counter offset + i.
  // Uniform in [a, b), Normal(a, b) with mean a and std b, Integer in [a, b).
  virtual void random(const Tensor& dst, RandomKind kind, uint64_t seed, uint64_t offset, double a, double b) = 0;

  // out = op(x); x has out's shape.
  virtual void unary(UnaryOp op, const Tensor& x, const Tensor& out) = 0;
  // out = op(a, b); a and b have out's shape (possibly expanded) and out's dtype.
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  // out = cond != 0 ? a : b; all have out's shape; cond may have any dtype.
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) = 0;

  // Reduces x over dims (sorted, unique) into out, which has x's shape with those dims set to 1.
  virtual void reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims, const Tensor& out) = 0;
  // Max (or min) along one dim: values and int64 indices, both of x's shape with dim set to 1.
  // The first index wins ties.
  virtual void arg_reduce(ReduceOp op, const Tensor& x, int dim, const Tensor& values, const Tensor& indices) = 0;

  // out[b] = a[b] @ b[b]: a is [B,M,K], b is [B,K,N], out is [B,M,N] contiguous. Any strides on
  // a and b (a transposed operand is a stride swap, a broadcast batch is stride 0).
  virtual void matmul(const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  // out[0] = sum over b of a[b] @ b[b]: a and b as for matmul, out [1,M,N] contiguous. One GEMM
  // whose reduction runs on through the batch (a convolution's weight gradient over its images),
  // with no [B,M,N] products to write and sum.
  virtual void matmul_sum(const Tensor& a, const Tensor& b, const Tensor& out) = 0;

  // Softmax or log-softmax of x along dim into out (same shape).
  virtual void softmax(const Tensor& x, int dim, bool log, const Tensor& out) = 0;
  // Their first-order backward from the forward's output y and the gradient g (all one shape):
  //   softmax:     out = y * (g - sum(g * y))      log_softmax: out = g - exp(y) * sum(g)
  // with the sums along dim.
  virtual void softmax_backward(const Tensor& y, const Tensor& grad, int dim, bool log, const Tensor& out) = 0;

  // Layer normalisation of each row of x [rows, cols] (contiguous): mean[r], rstd[r] =
  // 1 / sqrt(biased variance + eps) (both [rows], contiguous, x's dtype) and
  // out[r, c] = (x[r, c] - mean[r]) * rstd[r] * weight[c] + bias[c]. weight and bias are [cols],
  // contiguous, or undefined (factor 1, offset 0).
  virtual void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& out,
                          const Tensor& mean, const Tensor& rstd) = 0;

  // Batch normalisation with the batch's own statistics: x is [G, N, C, S] (contiguous), each
  // (g, c) normalised over its N * S values. Writes mean[g, c], var[g, c] (biased) and
  // rstd[g, c] = 1 / sqrt(var + eps) ([G * C], contiguous, x's dtype), and
  // out[g, n, c, s] = (x - mean) * (rstd * weight[g, c]) + bias[g, c]; weight and bias are
  // [G * C], contiguous, or undefined (factor 1, offset 0). G is the task dim of task-batched
  // input (1 otherwise), S the spatial positions.
  virtual void batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& out,
                          const Tensor& mean, const Tensor& var, const Tensor& rstd) = 0;
  // Its first-order backward for the gradient grad (x's shape, contiguous), from the forward's
  // mean and rstd; with x_hat = (x - mean) * rstd and M = N * S, writes whichever is defined of
  //   grad_bias[g, c] = sum grad,   grad_weight[g, c] = sum grad * x_hat,
  //   grad_x = weight * rstd * (grad - grad_bias / M - x_hat * grad_weight / M)
  // (sums over n and s; grad_x x's shape, the others [G * C], all contiguous).
  virtual void batch_norm_backward(const Tensor& x, const Tensor& grad, const Tensor& mean, const Tensor& rstd,
                                   const Tensor& weight, const Tensor& grad_x, const Tensor& grad_weight,
                                   const Tensor& grad_bias) = 0;

  // Cross-entropy of each row of logits [rows, classes] (contiguous) with class-index targets
  // [rows] (int64, contiguous; every entry is ignore_index or in [0, classes)): writes
  // lse[r] = logsumexp(logits[r]) and loss[r] = lse[r] - logits[r, target[r]], 0 where the
  // target is ignore_index (both [rows], contiguous, logits' dtype).
  virtual void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, const Tensor& loss,
                             const Tensor& lse) = 0;
  // Its first-order backward, from the forward's lse and the gradient grad [rows] of the loss
  // (contiguous): out[r, c] = grad[r] * (exp(logits[r, c] - lse[r]) - (c == target[r])), and 0 on
  // rows whose target is ignore_index; out is [rows, classes], contiguous.
  virtual void cross_entropy_backward(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                                      const Tensor& lse, const Tensor& grad, const Tensor& out) = 0;

  // One Adam / AdamW step, in place, elementwise over param, grad, exp_avg, exp_avg_sq and (amsgrad)
  // max_exp_avg_sq: all contiguous, same shape and dtype. The arithmetic is that of the
  // composite update in nn/adam.cpp, operation for operation, in the tensors' dtype.
  struct AdamStep {
    double beta1, beta2, eps, weight_decay;
    double decay_factor;           // AdamW: param *= decay_factor first; 1 otherwise
    double bias_correction2_sqrt;  // sqrt(1 - beta2^t)
    double step_size;              // lr / (1 - beta1^t)
    bool decoupled, amsgrad, maximize;
  };
  virtual void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                         const Tensor& max_exp_avg_sq, const AdamStep& step) = 0;

  // out = x.index_select(dim, index); index is 1-D int64, already range-checked.
  virtual void index_select(const Tensor& x, int dim, const Tensor& index, const Tensor& out) = 0;
  // out.index_select(dim, index) += src, in place on out.
  virtual void index_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) = 0;
  // out[..i..] = x[..index[..i..]..] along dim; index has out's shape.
  virtual void gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out) = 0;
  // out[..index[..i..]..] += src[..i..] along dim, in place on out; index has src's shape.
  virtual void scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) = 0;

  // im2col: x is [N,C,H,W] (any strides), cols is [N, C*kh*kw, oh*ow] contiguous with row
  // c*kh*kw + i*kw + j holding x[n, c, oy*sh - ph + i*dh, ox*sw - pw + j*dw] at column oy*ow + ox,
  // pad_value where that falls outside x (0 for unfold/convolution, -inf for max pooling).
  virtual void im2col(const Tensor& x, const Window2d& window, double pad_value, const Tensor& cols) = 0;
  // col2im, the adjoint: out [N,C,H,W] contiguous is overwritten with the sum, over every column
  // entry of cols [N, C*kh*kw, oh*ow] (any strides), of that entry at the position im2col read it
  // from; entries that fall in the padding are dropped.
  virtual void col2im(const Tensor& cols, const Window2d& window, const Tensor& out) = 0;

  // Optional: a convolution with a 3x3 kernel, stride 1, padding 1 and dilation 1 by a faster
  // algorithm than im2col + GEMM (the CPU's: Winograd, cpu_winograd.cpp). x [N,C,H,W]
  // and weight [O,C,3,3] of one floating dtype (any strides), bias [O] or undefined, out [N,O,H,W]
  // contiguous; the weight gradient [O,C,3,3] from grad [N,O,H,W] and x. column_bytes bounds the
  // temporaries as im2col's columns are bounded. Where the backend has no such path for these
  // operands (the default), conv3x3 returns false having written nothing and conv3x3_weight_grad
  // an undefined tensor; the caller then runs im2col + GEMM.
  virtual bool conv3x3(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t column_bytes,
                       const Tensor& out);
  virtual Tensor conv3x3_weight_grad(const Tensor& grad, const Tensor& x, int64_t column_bytes);

  // Max pooling straight from x [N,C,H,W] (contiguous): out and indices [N,C,oh,ow] (contiguous,
  // indices int64) get each window's maximum and its position y * W + x in the plane. Positions
  // in the padding never win (every window holds one of x: padding is at most half the kernel);
  // in window order (row-major) the first maximum wins ties, and the first NaN wins over numbers.
  virtual void max_pool2d(const Tensor& x, const Window2d& window, const Tensor& out, const Tensor& indices) = 0;
  // Its adjoint: out [N,C,H,W] (contiguous) is overwritten with zeros, then grad[n, c, o] added at
  // position indices[n, c, o] of plane (n, c); grad and indices are [N,C,oh,ow] (contiguous),
  // every index in [0, H * W).
  virtual void max_unpool2d(const Tensor& grad, const Tensor& indices, const Tensor& out) = 0;

  // Records the device work of `work` for replay (tensor/device_graph.h). Backends without
  // graphs keep this default, which throws.
  virtual std::unique_ptr<DeviceGraph> capture_graph(Device device, const std::function<void()>& work);
  virtual bool capturing_graph(Device) { return false; }
};

// The backend registered for a device's type; throws mg::Error when none is (e.g. cuda without MG_CUDA).
Backend& backend_for(Device device);
void register_backend(DeviceType type, Backend* backend);
bool has_backend(DeviceType type);

}  // namespace mg
