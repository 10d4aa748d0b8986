#include "tensor.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <sstream>

#include "geometry.h"
#include "kernels.h"
#include "small_object_pool.h"

namespace mg {

namespace detail {

void check_view_bounds(std::string_view op, const Storage& storage, DType dtype, const Shape& shape,
                       const Strides& strides, int64_t offset) {
  MG_CHECK(shape.size() == strides.size(), op, ": shape ", shape_str(shape), " and strides ", shape_str(strides),
           " have different lengths");
  MG_CHECK(offset >= 0, op, ": negative storage offset ", offset);
  bool empty = false;
  for (int64_t s : shape) {
    MG_CHECK(s >= 0, op, ": negative size in shape ", shape_str(shape));
    empty = empty || s == 0;
  }
  if (empty) return;
  int64_t lo = offset, hi = offset;
  for (size_t d = 0; d < shape.size(); ++d) {
    int64_t reach = 0;
    MG_CHECK(!__builtin_mul_overflow(shape[d] - 1, strides[d], &reach), op, ": strides ", shape_str(strides),
             " overflow for shape ", shape_str(shape));
    if (reach < 0)
      lo += reach;
    else
      hi += reach;
  }
  const int64_t capacity = static_cast<int64_t>(storage.nbytes() / element_size(dtype));
  MG_CHECK(lo >= 0 && hi < capacity, op, ": shape ", shape_str(shape), " with strides ", shape_str(strides),
           " and offset ", offset, " reaches element ", lo < 0 ? lo : hi, ", outside a storage of ", capacity,
           " elements");
}

}  // namespace detail

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  int64_t numel = 1;
  for (int64_t s : shape) {
    MG_CHECK(s >= 0, "empty: negative dimension ", s, " in shape ", shape_str(shape));
    MG_CHECK(!__builtin_mul_overflow(numel, s, &numel), "empty: shape ", shape_str(shape), " is too large");
  }
  int64_t nbytes = 0;
  MG_CHECK(!__builtin_mul_overflow(numel, static_cast<int64_t>(element_size(dtype)), &nbytes), "empty: shape ",
           shape_str(shape), " is too large");
  auto impl = std::allocate_shared<TensorImpl>(PoolAllocator<TensorImpl>());
  impl->storage = std::allocate_shared<Storage>(PoolAllocator<Storage>(), static_cast<std::size_t>(nbytes), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::make_view(const Tensor& base, Shape shape, Strides strides, int64_t offset) {
  const TensorImpl& b = base.impl();
  detail::check_view_bounds("view", *b.storage, b.dtype, shape, strides, offset);
  auto impl = std::allocate_shared<TensorImpl>(PoolAllocator<TensorImpl>());
  impl->storage = b.storage;
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = b.dtype;
  return Tensor(std::move(impl));
}

int64_t Tensor::size(int64_t dim) const { return impl().shape[wrap_dim("size", dim, this->dim())]; }

int64_t Tensor::stride(int64_t dim) const { return impl().strides[wrap_dim("stride", dim, this->dim())]; }

bool Tensor::is_contiguous() const {
  const TensorImpl& t = impl();
  int64_t expected = 1;
  for (size_t i = t.shape.size(); i-- > 0;) {
    if (t.shape[i] == 0) return true;
    if (t.shape[i] == 1) continue;
    if (t.strides[i] != expected) return false;
    expected *= t.shape[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  const TensorImpl& t = impl();
  return static_cast<char*>(t.storage->data()) + t.offset * static_cast<int64_t>(element_size(t.dtype));
}

double Tensor::item_as_double() const {
  MG_CHECK(numel() == 1, "item: tensor of shape ", shape_str(shape()), " has ", numel(), " elements, expected 1");
  return values_as_double()[0];
}

std::vector<double> Tensor::values_as_double() const {
  if (!device().is_cpu()) return kernels::to_device(*this, kCPU).values_as_double();
  const TensorImpl& t = impl();
  std::vector<double> out;
  const int64_t n = numel();
  out.reserve(static_cast<size_t>(n));
  if (n == 0) return out;
  dispatch_dtype(t.dtype, [&]<typename T>() {
    const T* base = static_cast<const T*>(raw_data());
    const int nd = static_cast<int>(t.shape.size());
    std::vector<int64_t> idx(nd, 0);
    int64_t pos = 0;
    for (int64_t i = 0; i < n; ++i) {
      out.push_back(static_cast<double>(base[pos]));
      for (int d = nd - 1; d >= 0; --d) {
        pos += t.strides[d];
        if (++idx[d] < t.shape[d]) break;
        pos -= t.strides[d] * t.shape[d];
        idx[d] = 0;
      }
    }
  });
  return out;
}

std::string describe(const Tensor& t) {
  if (!t.defined()) return "undefined";
  return shape_str(t.shape()) + " " + std::string(dtype_name(t.dtype())) + " " + t.device().str();
}

namespace {

std::string format_value(double v, DType dtype) {
  char buf[64];
  if (dtype == DType::Int64) {
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
    return buf;
  }
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::snprintf(buf, sizeof buf, dtype == DType::Float64 ? "%.10g" : "%.6g", v);
  std::string s = buf;
  // Mark floats as floats: "1" -> "1.0" (but leave "1e+10" and "0.5" alone).
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

// Summarise like PyTorch: above this many elements, show the first and last few of each dim.
constexpr int64_t kSummaryThreshold = 1000;
constexpr int64_t kEdgeItems = 3;

}  // namespace

std::ostream& operator<<(std::ostream& out, const Tensor& t) {
  if (!t.defined()) return out << "tensor(undefined)";
  const Shape& shape = t.shape();
  const DType dtype = t.dtype();
  std::string suffix;
  if (dtype != DType::Float32) suffix += ", dtype=" + std::string(dtype_name(dtype));
  if (!t.device().is_cpu()) suffix += ", device=" + t.device().str();

  const std::vector<double> values = t.values_as_double();
  if (shape.empty()) return out << "tensor(" << format_value(values[0], dtype) << suffix << ")";
  if (values.empty()) {
    out << "tensor([]";
    if (shape.size() != 1) out << ", size=" << shape_str(shape);
    return out << suffix << ")";
  }

  const bool summarize = t.numel() > kSummaryThreshold;
  const int nd = static_cast<int>(shape.size());
  const Strides strides = contiguous_strides(shape);
  // The indices shown along each dim (-1 marks the "..." gap).
  std::vector<std::vector<int64_t>> shown(nd);
  for (int d = 0; d < nd; ++d) {
    if (summarize && shape[d] > 2 * kEdgeItems) {
      for (int64_t i = 0; i < kEdgeItems; ++i) shown[d].push_back(i);
      shown[d].push_back(-1);
      for (int64_t i = shape[d] - kEdgeItems; i < shape[d]; ++i) shown[d].push_back(i);
    } else {
      for (int64_t i = 0; i < shape[d]; ++i) shown[d].push_back(i);
    }
  }
  // Format the shown elements first so that columns line up.
  size_t width = 0;
  std::function<void(int, int64_t)> measure = [&](int d, int64_t base) {
    for (int64_t i : shown[d]) {
      if (i < 0) continue;
      if (d == nd - 1)
        width = std::max(width, format_value(values[base + i * strides[d]], dtype).size());
      else
        measure(d + 1, base + i * strides[d]);
    }
  };
  measure(0, 0);

  const std::string prefix = "tensor(";
  std::ostringstream body;
  std::function<void(int, int64_t)> print = [&](int d, int64_t base) {
    body << "[";
    bool first = true;
    for (int64_t i : shown[d]) {
      if (!first) {
        body << ",";
        if (d == nd - 1) {
          body << " ";
        } else {
          body << std::string(static_cast<size_t>(nd - d - 1), '\n')
               << std::string(prefix.size() + static_cast<size_t>(d) + 1, ' ');
        }
      }
      first = false;
      if (i < 0) {
        body << "...";
        continue;
      }
      if (d == nd - 1) {
        const std::string s = format_value(values[base + i * strides[d]], dtype);
        body << std::string(width - s.size(), ' ') << s;
      } else {
        print(d + 1, base + i * strides[d]);
      }
    }
    body << "]";
  };
  print(0, 0);
  return out << prefix << body.str() << suffix << ")";
}

}  // namespace mg
