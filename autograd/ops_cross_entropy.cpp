// cross_entropy_rows: cross-entropy of class-index targets along the last dim, one loss per row,
// as a single op: a fused forward kernel that also keeps each row's logsumexp. The gradient is
//   dlogits = g[..., None] * (softmax(logits) - one_hot(target)),  0 on rows whose target is ignored
// Its values come from one fused kernel, from the saved logits and logsumexp. When the backward
// is recorded (create_graph), their derivatives come from the formula in differentiable ops
// (fused_backward.h), softmax recomputed from the logits: one-hot and mask are constants of the tape.
#include "../tensor/kernels.h"
#include "fused_backward.h"
#include "ops.h"
#include "record.h"

namespace mg {
namespace {

// 1 on each row's target class, 0 elsewhere (and on whole rows whose target is no class).
Tensor one_hot_like(const Tensor& target, const Tensor& logits) {
  const Tensor classes = arange(static_cast<double>(logits.shape().back()), kInt64, target.device());
  return to_dtype(eq(unsqueeze(target, -1), classes), logits.dtype());
}

}  // namespace

Tensor cross_entropy_rows(const Tensor& logits, const Tensor& target, int64_t ignore_index) {
  kernels::CrossEntropyResult r = kernels::cross_entropy_rows(logits, target, ignore_index);
  if (should_record(logits))
    record(OpId::cross_entropy_rows, {logits}, r.loss, {logits, target, r.logsumexp},
           [ignore_index](const BackwardArgs& a) -> TensorList {
             // in = (logits, target, logsumexp, grad)
             auto kernel = [ignore_index](const TensorList& in) -> TensorList {
               return {kernels::cross_entropy_rows_backward(in[0], in[1], ignore_index, in[2], in[3])};
             };
             auto formula = [ignore_index](const TensorList& in) -> TensorList {
               const Tensor &logits = in[0], &target = in[1];
               const Tensor kept = to_dtype(
                   ne(target, full({}, static_cast<double>(ignore_index), kInt64, target.device())), logits.dtype());
               return {(softmax(logits, -1) - one_hot_like(target, logits)) * unsqueeze(in[3] * kept, -1)};
             };
             return fused_backward("cross_entropy backward", {a.saved[0], a.saved[1], a.saved[2], a.grad}, kernel,
                                   formula);
           });
  return r.loss;
}

}  // namespace mg
