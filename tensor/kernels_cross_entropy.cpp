// Front ends of the fused cross-entropy kernels, declared in kernels.h. The backend sees a
// contiguous [rows, classes] matrix and a contiguous [rows] target, whatever the caller's layout
// (a class dim moved last by a permutation arrives here as a strided view and is copied once).
#include "device_graph.h"
#include "kernels.h"

namespace mg::kernels {
namespace {

constexpr const char* kOp = "cross_entropy_rows";

Backend& backend(const Tensor& t) { return backend_for(t.device()); }

// A contiguous view of t (itself contiguous) as a 1-d or 2-d matrix of rows.
Tensor as_rows(const Tensor& t, int64_t rows) { return as_strided(t, {rows}, {1}, t.offset()); }
Tensor as_rows(const Tensor& t, int64_t rows, int64_t cols) {
  return as_strided(t, {rows, cols}, {cols, 1}, t.offset());
}

void check_logits_and_target(const char* op, const Tensor& logits, const Tensor& target) {
  check_defined(op, logits, "logits");
  check_defined(op, target, "target");
  MG_CHECK(is_floating(logits.dtype()), op, ": logits dtype ", logits.dtype(),
           " is not supported (needs float32 or float64)");
  MG_CHECK(logits.dim() >= 1, op, ": logits must have a class dim (the last), got a 0-d tensor");
  MG_CHECK(target.dtype() == kInt64, op, ": target must be int64 class indices, got ", target.dtype());
  const Shape rows_shape(logits.shape().begin(), logits.shape().end() - 1);
  MG_CHECK(target.shape() == rows_shape, op, ": target of shape ", shape_str(target.shape()),
           " does not match logits of shape ", shape_str(logits.shape()), " (expected ", shape_str(rows_shape), ")");
  check_same_device(op, logits, target);
}

// One pass on the host over the targets: an out-of-range class is a caller's bug, reported here.
// Not while a graph is captured, when nothing can be read on the host: the kernels then give
// NaN for such a row rather than read outside it.
void check_target_range(const Tensor& target, int64_t classes, int64_t ignore_index) {
  if (target.numel() == 0 || capturing_graph(target.device())) return;
  const Tensor host = contiguous(to_device(target, kCPU));
  const int64_t* v = host.data_ptr<int64_t>();
  for (int64_t i = 0, n = host.numel(); i < n; ++i)
    MG_CHECK(v[i] == ignore_index || (v[i] >= 0 && v[i] < classes), kOp, ": target ", v[i], " is out of range for ",
             classes, " classes (ignore_index is ", ignore_index, ")");
}

}  // namespace

CrossEntropyResult cross_entropy_rows(const Tensor& logits, const Tensor& target, int64_t ignore_index) {
  check_logits_and_target(kOp, logits, target);
  const int64_t classes = logits.shape().back();
  check_target_range(target, classes, ignore_index);
  CrossEntropyResult r{Tensor::empty(target.shape(), logits.dtype(), logits.device()),
                       Tensor::empty(target.shape(), logits.dtype(), logits.device())};
  const int64_t rows = target.numel();
  if (rows == 0) return r;
  const Tensor x = contiguous(logits), t = contiguous(target);
  backend(r.loss).cross_entropy(as_rows(x, rows, classes), as_rows(t, rows), ignore_index, as_rows(r.loss, rows),
                                as_rows(r.logsumexp, rows));
  return r;
}

Tensor cross_entropy_rows_backward(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                                   const Tensor& logsumexp, const Tensor& grad) {
  const char* op = "cross_entropy_rows_backward";
  check_logits_and_target(op, logits, target);
  check_defined(op, logsumexp, "logsumexp");
  check_defined(op, grad, "grad");
  for (const Tensor* p : {&logsumexp, &grad}) {
    const char* what = p == &grad ? "grad" : "logsumexp";
    MG_CHECK(p->shape() == target.shape(), op, ": ", what, " of shape ", shape_str(p->shape()),
             " does not match target of shape ", shape_str(target.shape()));
    check_same_dtype(op, logits, *p);
    check_same_device(op, logits, *p);
  }
  check_target_range(target, logits.shape().back(), ignore_index);
  Tensor out = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
  const int64_t rows = target.numel(), classes = logits.shape().back();
  if (out.numel() == 0) return out;
  const Tensor x = contiguous(logits), t = contiguous(target), lse = contiguous(logsumexp), g = contiguous(grad);
  backend(out).cross_entropy_backward(as_rows(x, rows, classes), as_rows(t, rows), ignore_index, as_rows(lse, rows),
                                      as_rows(g, rows), as_rows(out, rows, classes));
  return out;
}

}  // namespace mg::kernels
