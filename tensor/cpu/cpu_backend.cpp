#include "cpu_backend.h"

#include "../tensor.h"
#include "cpu_allocator.h"
#include "cpu_kernels.h"

namespace mg {
namespace {

void check_cpu(const char* op, const Tensor& t) {
  MG_CHECK(t.device().is_cpu(), "cpu backend: ", op, " got a tensor on ", t.device());
}

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }

  void* allocate(std::size_t nbytes, Device) override { return cpu::allocate(nbytes); }
  void deallocate(void* data, std::size_t nbytes, Device) override { cpu::deallocate(data, nbytes); }

  void copy(const Tensor& src, const Tensor& dst) override {
    // Transfers to or from another device go through that device's backend.
    check_cpu("copy", src);
    check_cpu("copy", dst);
    cpu::copy(src, dst);
  }
  void fill(const Tensor& dst, double value) override { cpu::fill(dst, value); }
  void arange(const Tensor& dst, double start, double step) override { cpu::arange(dst, start, step); }
  void random(const Tensor& dst, RandomKind kind, uint64_t seed, uint64_t offset, double a, double b) override {
    cpu::random(dst, kind, seed, offset, a, b);
  }
  void unary(UnaryOp op, const Tensor& x, const Tensor& out) override { cpu::unary(op, x, out); }
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override {
    cpu::binary(op, a, b, out);
  }
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override {
    cpu::where(cond, a, b, out);
  }
  void reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims, const Tensor& out) override {
    cpu::reduce(op, x, dims, out);
  }
  void arg_reduce(ReduceOp op, const Tensor& x, int dim, const Tensor& values, const Tensor& indices) override {
    cpu::arg_reduce(op, x, dim, values, indices);
  }
  void matmul(const Tensor& a, const Tensor& b, const Tensor& out) override { cpu::matmul(a, b, out); }
  void softmax(const Tensor& x, int dim, bool log, const Tensor& out) override { cpu::softmax(x, dim, log, out); }
  void softmax_backward(const Tensor& y, const Tensor& grad, int dim, bool log, const Tensor& out) override {
    cpu::softmax_backward(y, grad, dim, log, out);
  }
  void matmul_sum(const Tensor& a, const Tensor& b, const Tensor& out) override { cpu::matmul_sum(a, b, out); }
  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& out,
                  const Tensor& mean, const Tensor& rstd) override {
    cpu::layer_norm(x, weight, bias, eps, out, mean, rstd);
  }
  void batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& out,
                  const Tensor& mean, const Tensor& var, const Tensor& rstd) override {
    cpu::batch_norm(x, weight, bias, eps, out, mean, var, rstd);
  }
  void batch_norm_backward(const Tensor& x, const Tensor& grad, const Tensor& mean, const Tensor& rstd,
                           const Tensor& weight, const Tensor& grad_x, const Tensor& grad_weight,
                           const Tensor& grad_bias) override {
    cpu::batch_norm_backward(x, grad, mean, rstd, weight, grad_x, grad_weight, grad_bias);
  }
  void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, const Tensor& loss,
                     const Tensor& lse) override {
    cpu::cross_entropy(logits, target, ignore_index, loss, lse);
  }
  void cross_entropy_backward(const Tensor& logits, const Tensor& target, int64_t ignore_index, const Tensor& lse,
                              const Tensor& grad, const Tensor& out) override {
    cpu::cross_entropy_backward(logits, target, ignore_index, lse, grad, out);
  }
  void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                 const Tensor& max_exp_avg_sq, const AdamStep& step) override {
    cpu::adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step);
  }
  void index_select(const Tensor& x, int dim, const Tensor& index, const Tensor& out) override {
    cpu::index_select(x, dim, index, out);
  }
  void index_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) override {
    cpu::index_add(out, dim, index, src);
  }
  void gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out) override {
    cpu::gather(x, dim, index, out);
  }
  void scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) override {
    cpu::scatter_add(out, dim, index, src);
  }
  void im2col(const Tensor& x, const Window2d& window, double pad_value, const Tensor& cols) override {
    cpu::im2col(x, window, pad_value, cols);
  }
  void col2im(const Tensor& cols, const Window2d& window, const Tensor& out) override {
    cpu::col2im(cols, window, out);
  }
  bool conv3x3(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t column_bytes,
               const Tensor& out) override {
    if (!cpu::winograd_conv3x3_applies(x, weight.shape()[0])) return false;
    cpu::winograd_conv3x3(x, weight, bias, column_bytes, out);
    return true;
  }
  Tensor conv3x3_weight_grad(const Tensor& grad, const Tensor& x, int64_t column_bytes) override {
    if (!cpu::winograd_conv3x3_applies(x, grad.shape()[1])) return Tensor();
    return cpu::winograd_conv3x3_weight_grad(grad, x, column_bytes);
  }
  void max_pool2d(const Tensor& x, const Window2d& window, const Tensor& out, const Tensor& indices) override {
    cpu::max_pool2d(x, window, out, indices);
  }
  void max_unpool2d(const Tensor& grad, const Tensor& indices, const Tensor& out) override {
    cpu::max_unpool2d(grad, indices, out);
  }
};

}  // namespace

Backend& cpu_backend() {
  // Never destroyed: storages owned by static objects may be freed after main returns.
  static CpuBackend* backend = new CpuBackend();
  return *backend;
}

}  // namespace mg
