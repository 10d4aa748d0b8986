#include "cuda_backend.h"

#include "../tensor/backend.h"
#include "../tensor/tensor.h"
#include "cuda_allocator.h"
#include "cuda_context.h"
#include "cuda_graph.h"
#include "cuda_kernels.h"

namespace mg::cuda {
namespace {

// Every kernel of one call runs on the device of the tensor it writes; the guard makes that
// device current for the launch and restores the caller's afterwards.
class CudaBackend final : public Backend {
 public:
  const char* name() const override { return "cuda"; }

  void* allocate(std::size_t nbytes, Device device) override {
    check_device("empty", device);
    DeviceGuard guard(device.index);
    return cuda::allocate(device.index, nbytes, stream_for(device.index));
  }
  void deallocate(void* data, std::size_t, Device device) override { cuda::deallocate(device.index, data); }

  void copy(const Tensor& src, const Tensor& dst) override {
    // Called for dst on a CUDA device, or for src on one with dst on the CPU.
    const Device side = dst.device().is_cuda() ? dst.device() : src.device();
    DeviceGuard guard(side.index);
    if (src.device() == dst.device())
      copy_same_device(src, dst);
    else
      copy_across_devices(src, dst);
  }
  std::unique_ptr<DeviceGraph> capture_graph(Device device, const std::function<void()>& work) override {
    return cuda::capture_graph(device.index, work);
  }
  bool capturing_graph(Device device) override { return cuda::capturing(device.index); }
  void fill(const Tensor& dst, double value) override {
    DeviceGuard guard(index_of(dst));
    cuda::fill(dst, value);
  }
  void arange(const Tensor& dst, double start, double step) override {
    DeviceGuard guard(index_of(dst));
    cuda::arange(dst, start, step);
  }
  void random(const Tensor& dst, RandomKind kind, uint64_t seed, uint64_t offset, double a, double b) override {
    DeviceGuard guard(index_of(dst));
    cuda::random(dst, kind, seed, offset, a, b);
  }
  void unary(UnaryOp op, const Tensor& x, const Tensor& out) override {
    DeviceGuard guard(index_of(out));
    cuda::unary(op, x, out);
  }
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override {
    DeviceGuard guard(index_of(out));
    cuda::binary(op, a, b, out);
  }
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override {
    DeviceGuard guard(index_of(out));
    cuda::where(cond, a, b, out);
  }
  void reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims, const Tensor& out) override {
    DeviceGuard guard(index_of(out));
    cuda::reduce(op, x, dims, out);
  }
  void arg_reduce(ReduceOp op, const Tensor& x, int dim, const Tensor& values, const Tensor& indices) override {
    DeviceGuard guard(index_of(values));
    cuda::arg_reduce(op, x, dim, values, indices);
  }
  void matmul(const Tensor& a, const Tensor& b, const Tensor& out) override {
    DeviceGuard guard(index_of(out));
    cuda::matmul(a, b, out);
  }
  void matmul_sum(const Tensor& a, const Tensor& b, const Tensor& out) override {
    DeviceGuard guard(index_of(out));
    cuda::matmul_sum(a, b, out);
  }
  void softmax(const Tensor& x, int dim, bool log, const Tensor& out) override {
    DeviceGuard guard(index_of(out));
    cuda::softmax(x, dim, log, out);
  }
  void softmax_backward(const Tensor& y, const Tensor& grad, int dim, bool log, const Tensor& out) override {
    DeviceGuard guard(index_of(out));
    cuda::softmax_backward(y, grad, dim, log, out);
  }
  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& out,
                  const Tensor& mean, const Tensor& rstd) override {
    DeviceGuard guard(index_of(out));
    cuda::layer_norm(x, weight, bias, eps, out, mean, rstd);
  }
  void batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& out,
                  const Tensor& mean, const Tensor& var, const Tensor& rstd) override {
    cuda::batch_norm(x, weight, bias, eps, out, mean, var, rstd);
  }
  void batch_norm_backward(const Tensor& x, const Tensor& grad, const Tensor& mean, const Tensor& rstd,
                           const Tensor& weight, const Tensor& grad_x, const Tensor& grad_weight,
                           const Tensor& grad_bias) override {
    cuda::batch_norm_backward(x, grad, mean, rstd, weight, grad_x, grad_weight, grad_bias);
  }
  void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, const Tensor& loss,
                     const Tensor& lse) override {
    DeviceGuard guard(index_of(loss));
    cuda::cross_entropy(logits, target, ignore_index, loss, lse);
  }
  void cross_entropy_backward(const Tensor& logits, const Tensor& target, int64_t ignore_index, const Tensor& lse,
                              const Tensor& grad, const Tensor& out) override {
    DeviceGuard guard(index_of(out));
    cuda::cross_entropy_backward(logits, target, ignore_index, lse, grad, out);
  }
  void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                 const Tensor& max_exp_avg_sq, const AdamStep& step) override {
    DeviceGuard guard(index_of(param));
    cuda::adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step);
  }
  void index_select(const Tensor& x, int dim, const Tensor& index, const Tensor& out) override {
    DeviceGuard guard(index_of(out));
    cuda::index_select(x, dim, index, out);
  }
  void index_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) override {
    DeviceGuard guard(index_of(out));
    cuda::index_add(out, dim, index, src);
  }
  void gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out) override {
    DeviceGuard guard(index_of(out));
    cuda::gather(x, dim, index, out);
  }
  void scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) override {
    DeviceGuard guard(index_of(out));
    cuda::scatter_add(out, dim, index, src);
  }
  void im2col(const Tensor& x, const Window2d& window, double pad_value, const Tensor& cols) override {
    DeviceGuard guard(index_of(cols));
    cuda::im2col(x, window, pad_value, cols);
  }
  void col2im(const Tensor& cols, const Window2d& window, const Tensor& out) override {
    DeviceGuard guard(index_of(out));
    cuda::col2im(cols, window, out);
  }
  void max_pool2d(const Tensor& x, const Window2d& window, const Tensor& out, const Tensor& indices) override {
    cuda::max_pool2d(x, window, out, indices);
  }
  void max_unpool2d(const Tensor& grad, const Tensor& indices, const Tensor& out) override {
    cuda::max_unpool2d(grad, indices, out);
  }

 private:
  static int index_of(const Tensor& t) { return t.device().index; }
};

}  // namespace

Backend* backend_if_device_present() {
  if (device_count() == 0) return nullptr;
  static CudaBackend* backend = new CudaBackend();  // never destroyed, like the CPU backend
  return backend;
}

}  // namespace mg::cuda
