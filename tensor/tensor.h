#pragma once
// mg::Tensor: a cheap value handle (shared ownership) to a strided view of a Storage.
// The type knows nothing of gradients beyond a slot for autograd metadata; the
// differentiable member functions declared here are defined in autograd/.
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "device.h"
#include "dtype.h"
#include "error.h"
#include "shape.h"
#include "storage.h"

namespace mg {

struct AutogradMeta;  // autograd/autograd_meta.h
class Node;           // autograd/node.h

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Strides strides;
  int64_t offset = 0;  // in elements
  DType dtype = kFloat32;
  std::shared_ptr<AutogradMeta> autograd;  // null for tensors that never took part in autograd
};

struct BackwardOptions {
  bool retain_graph = false;
  bool create_graph = false;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // A new, uninitialised, contiguous tensor.
  static Tensor empty(const Shape& shape, DType dtype = kFloat32, Device device = kCPU);
  // A view of other's storage with the given geometry (no checks beyond bounds).
  static Tensor make_view(const Tensor& base, Shape shape, Strides strides, int64_t offset);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& sizes() const { return impl().shape; }
  const Strides& strides() const { return impl().strides; }
  int64_t size(int64_t dim) const;
  int64_t stride(int64_t dim) const;
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t numel() const { return numel_of(impl().shape); }
  int64_t offset() const { return impl().offset; }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  uint64_t version() const { return impl().storage->version(); }
  void bump_version() const { impl().storage->bump_version(); }

  // Pointer to the first element (storage data + offset). Checks the dtype.
  template <typename T>
  T* data_ptr() const {
    MG_CHECK(dtype_of<T>() == dtype(), "data_ptr: tensor has dtype ", dtype(), ", asked for ", dtype_of<T>());
    return static_cast<T*>(raw_data());
  }
  void* raw_data() const;

  // The single value of a one-element tensor, converted to T.
  template <typename T = double>
  T item() const {
    return static_cast<T>(item_as_double());
  }
  double item_as_double() const;
  // All values, row-major, converted to T (a copy; for tests and printing).
  template <typename T = double>
  std::vector<T> to_vector() const {
    std::vector<double> v = values_as_double();
    return std::vector<T>(v.begin(), v.end());
  }
  std::vector<double> values_as_double() const;

  // --- autograd (defined in autograd/) ---
  bool requires_grad() const;
  Tensor& requires_grad_(bool on = true);
  const Tensor& requires_grad_(bool on = true) const;
  Tensor grad() const;  // undefined when no gradient was accumulated
  void set_grad(const Tensor& grad) const;
  bool is_leaf() const;
  std::shared_ptr<Node> grad_fn() const;
  Tensor detach() const;
  void backward(const Tensor& grad_output = Tensor(), BackwardOptions options = {}) const;

  // --- differentiable views and conversions (defined in autograd/) ---
  Tensor reshape(const Shape& shape) const;
  Tensor view(const Shape& shape) const;
  Tensor flatten() const;
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor t() const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;
  Tensor squeeze(int64_t dim) const;
  Tensor squeeze() const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;

  // --- differentiable reductions (defined in autograd/) ---
  Tensor sum() const;
  Tensor sum(const std::vector<int64_t>& dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(const std::vector<int64_t>& dims, bool keepdim = false) const;

  // --- in place (bump the version counter; defined in autograd/) ---
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& sub_(const Tensor& other);
  Tensor& mul_(const Tensor& other);
  Tensor& mul_(double value);
  Tensor& add_(double value);
  Tensor& zero_();
  Tensor& fill_(double value);
  Tensor& copy_(const Tensor& src);

  TensorImpl& impl() const {
    MG_CHECK(impl_ != nullptr, "tensor: operation on an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Describes a tensor for error messages: "[3,4] float32 cpu".
std::string describe(const Tensor& t);
// Prints like PyTorch: tensor([[1, 2], [3, 4]], dtype=float64).
std::ostream& operator<<(std::ostream& out, const Tensor& t);

}  // namespace mg
