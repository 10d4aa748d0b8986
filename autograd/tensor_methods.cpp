// The autograd and differentiable members of mg::Tensor (declared in tensor/tensor.h).
#include "../tensor/kernels.h"
#include "autograd_meta_access.h"
#include "grad_mode.h"
#include "ops.h"
#include "../tensor/small_object_pool.h"

namespace mg {

bool Tensor::requires_grad() const {
  const auto& meta = impl().autograd;
  return meta && meta->requires_grad;
}

const Tensor& Tensor::requires_grad_(bool on) const {
  MG_CHECK(!on || is_floating(dtype()), "requires_grad_: only floating tensors can require gradients, got ",
           describe(*this));
  const auto& meta = impl().autograd;
  MG_CHECK(!(meta && meta->grad_fn) || on, "requires_grad_: cannot turn off requires_grad on ", describe(*this),
           ", which was computed from tensors that require grad; use detach() instead");
  if (!on && !meta) return *this;
  autograd_meta(*this).requires_grad = on;
  return *this;
}

Tensor& Tensor::requires_grad_(bool on) {
  static_cast<const Tensor&>(*this).requires_grad_(on);
  return *this;
}

Tensor Tensor::grad() const {
  const auto& meta = impl().autograd;
  return meta ? meta->grad : Tensor();
}

void Tensor::set_grad(const Tensor& grad) const {
  if (grad.defined()) {
    MG_CHECK(grad.shape() == shape() && grad.dtype() == dtype() && grad.device() == device(),
             "set_grad: gradient ", describe(grad), " does not match tensor ", describe(*this));
  }
  autograd_meta(*this).grad = grad;
}

bool Tensor::is_leaf() const {
  const auto& meta = impl().autograd;
  return !meta || !meta->grad_fn;
}

std::shared_ptr<Node> Tensor::grad_fn() const {
  const auto& meta = impl().autograd;
  return meta ? meta->grad_fn : nullptr;
}

Tensor Tensor::detach() const {
  auto copy = std::allocate_shared<TensorImpl>(PoolAllocator<TensorImpl>(), impl());
  copy->autograd.reset();
  return Tensor(std::move(copy));
}

Tensor Tensor::reshape(const Shape& shape) const { return mg::reshape(*this, shape); }
Tensor Tensor::view(const Shape& shape) const { return mg::view(*this, shape); }
Tensor Tensor::flatten() const { return mg::reshape(*this, {-1}); }
Tensor Tensor::transpose(int64_t dim0, int64_t dim1) const { return mg::transpose(*this, dim0, dim1); }
Tensor Tensor::t() const {
  MG_CHECK(dim() <= 2, "t: expects a tensor of at most 2 dims, got ", describe(*this));
  return dim() < 2 ? *this : mg::transpose(*this, 0, 1);
}
Tensor Tensor::permute(const std::vector<int64_t>& dims) const { return mg::permute(*this, dims); }
Tensor Tensor::narrow(int64_t dim, int64_t start, int64_t length) const { return mg::narrow(*this, dim, start, length); }
Tensor Tensor::slice(int64_t dim, int64_t start, int64_t end, int64_t step) const {
  return mg::slice(*this, dim, start, end, step);
}
Tensor Tensor::select(int64_t dim, int64_t index) const { return mg::select(*this, dim, index); }
Tensor Tensor::expand(const Shape& shape) const { return mg::expand(*this, shape); }
Tensor Tensor::squeeze(int64_t dim) const { return mg::squeeze(*this, dim); }
Tensor Tensor::squeeze() const { return mg::squeeze(*this); }
Tensor Tensor::unsqueeze(int64_t dim) const { return mg::unsqueeze(*this, dim); }
Tensor Tensor::contiguous() const { return mg::contiguous(*this); }
Tensor Tensor::clone() const { return mg::clone(*this); }
Tensor Tensor::to(DType dtype) const { return mg::to_dtype(*this, dtype); }
Tensor Tensor::to(Device device) const { return mg::to_device(*this, device); }

Tensor Tensor::sum() const { return mg::sum(*this); }
Tensor Tensor::sum(const std::vector<int64_t>& dims, bool keepdim) const { return mg::sum(*this, dims, keepdim); }
Tensor Tensor::mean() const { return mg::mean(*this); }
Tensor Tensor::mean(const std::vector<int64_t>& dims, bool keepdim) const { return mg::mean(*this, dims, keepdim); }

// In-place ops change values that the tape may have saved; the version bump lets backward
// detect that. On a tensor that requires grad they are only allowed with recording off
// (optimizer updates), since an in-place step cannot be put on the tape.
namespace {
void check_inplace(std::string_view op, const Tensor& self) {
  MG_CHECK(!(GradMode::is_enabled() && self.requires_grad()), op, ": in-place operation on ", describe(self),
           ", which requires grad; use the out-of-place op, or wrap the update in NoGradGuard");
}
void assign(const Tensor& self, const Tensor& value) {
  kernels::copy_(self, value);
  self.bump_version();
}
}  // namespace

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  check_inplace("add_", *this);
  NoGradGuard no_grad;
  Tensor value = alpha == 1.0 ? kernels::binary(BinaryOp::Add, *this, other)
                              : kernels::binary(BinaryOp::Add, *this,
                                                kernels::binary(BinaryOp::Mul, other, kernels::scalar_like(alpha, other)));
  MG_CHECK(value.shape() == shape(), "add_: the result shape ", shape_str(value.shape()),
           " does not match the tensor's shape ", shape_str(shape()));
  assign(*this, value);
  return *this;
}

Tensor& Tensor::sub_(const Tensor& other) { return add_(other, -1.0); }

Tensor& Tensor::mul_(const Tensor& other) {
  check_inplace("mul_", *this);
  Tensor value = kernels::binary(BinaryOp::Mul, *this, other);
  MG_CHECK(value.shape() == shape(), "mul_: the result shape ", shape_str(value.shape()),
           " does not match the tensor's shape ", shape_str(shape()));
  assign(*this, value);
  return *this;
}

Tensor& Tensor::mul_(double value) { return mul_(kernels::scalar_like(value, *this)); }
Tensor& Tensor::add_(double value) { return add_(kernels::scalar_like(value, *this)); }

Tensor& Tensor::zero_() { return fill_(0.0); }

Tensor& Tensor::fill_(double value) {
  check_inplace("fill_", *this);
  kernels::fill_(*this, value);
  bump_version();
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace("copy_", *this);
  assign(*this, src);
  return *this;
}

}  // namespace mg
