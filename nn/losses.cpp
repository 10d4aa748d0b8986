#include "losses.h"

#include <numeric>
#include <vector>

#include "../autograd/ops.h"
#include "../tensor/device_graph.h"

namespace mg::nn {
namespace {

Tensor reduce(const Tensor& losses, Reduction reduction) {
  switch (reduction) {
    case Reduction::None:
      return losses;
    case Reduction::Sum:
      return sum(losses);
    case Reduction::Mean:
      return mean(losses);
  }
  MG_FAIL("loss: unknown reduction ", static_cast<int>(reduction));
}

int64_t class_dim(const Tensor& input) { return input.dim() == 1 ? 0 : 1; }

// x with its class dim moved last: [N, C, d...] -> [N, d..., C].
Tensor classes_last(const Tensor& x) {
  if (x.dim() <= 2) return x;
  std::vector<int64_t> order{0};
  for (int64_t d = 2; d < x.dim(); ++d) order.push_back(d);
  order.push_back(1);
  return permute(x, order);
}

// A [C] tensor shaped to broadcast along input's class dim.
Tensor along_classes(const Tensor& per_class, const Tensor& input) {
  Shape shape(static_cast<std::size_t>(input.dim()), 1);
  shape[static_cast<std::size_t>(class_dim(input))] = per_class.numel();
  return reshape(per_class, shape);
}

void check_class_weight(const char* op, const Tensor& weight, const Tensor& input) {
  if (!weight.defined()) return;
  MG_CHECK(weight.dim() == 1 && weight.size(0) == input.size(class_dim(input)) && weight.dtype() == input.dtype(), op,
           ": weight ", describe(weight), " must be a [", input.size(class_dim(input)), "] tensor of input's dtype");
}

void check_index_target(const char* op, const Tensor& input, const Tensor& target) {
  MG_CHECK(input.defined() && target.defined(), op, ": input and target must be defined");
  MG_CHECK(is_floating(input.dtype()) && input.dim() >= 1, op, ": input must be floating [N, C, ...] or [C], got ",
           describe(input));
  MG_CHECK(target.dtype() == kInt64, op, ": class-index target must be int64, got ", describe(target));
  Shape expected = input.shape();
  expected.erase(expected.begin() + class_dim(input));
  MG_CHECK(target.shape() == expected, op, ": target ", describe(target), " does not match input ", describe(input),
           " (expected target shape ", shape_str(expected), ")");
}

struct PickedTargets {
  Tensor valid;  // 0/1 in input's dtype: target != ignore_index
  Tensor safe;   // targets with ignored ones replaced by class 0, so they can be gathered
};

// The targets' mask and gatherable indices, without checking their range.
PickedTargets mark_targets(const Tensor& input, const Tensor& target, int64_t ignore_index) {
  Tensor valid = ne(target, full({}, static_cast<double>(ignore_index), kInt64, target.device()));
  Tensor safe = where(valid, target, zeros({}, kInt64, target.device()));
  return {to_dtype(valid, input.dtype()), safe};
}

PickedTargets pick_targets(const char* op, const Tensor& input, const Tensor& target, int64_t ignore_index) {
  PickedTargets picked = mark_targets(input, target, ignore_index);
  if (picked.safe.numel() > 0 && !capturing_graph(input.device())) {  // a capture cannot read on the host
    const int64_t classes = input.size(class_dim(input));
    const int64_t lo = amin(picked.safe).item<int64_t>(), hi = amax(picked.safe).item<int64_t>();
    MG_CHECK(lo >= 0 && hi < classes, op, ": target ", lo < 0 ? lo : hi, " is out of range for ", classes,
             " classes (ignore_index is ", ignore_index, ")");
  }
  return picked;
}

// The weight each element's target carries: 1 or weight[target], 0 where ignored.
Tensor target_weights(const PickedTargets& picked, const Tensor& weight) {
  if (!weight.defined()) return picked.valid;
  Tensor w = reshape(index_select(weight, 0, reshape(picked.safe, {-1})), picked.safe.shape());
  return picked.valid * w;
}

// Class-index targets without label smoothing: the fused per-row op (which checks the targets'
// range), then class weights and the reduction as nll_loss applies them.
Tensor cross_entropy_of_indices(const Tensor& input, const Tensor& target, const CrossEntropyOptions& options) {
  check_index_target("cross_entropy", input, target);
  Tensor losses = cross_entropy_rows(classes_last(input), target, options.ignore_index);
  if (!options.weight.defined() && options.reduction != Reduction::Mean) return reduce(losses, options.reduction);
  Tensor w = target_weights(mark_targets(input, target, options.ignore_index), options.weight);
  if (options.weight.defined()) losses = losses * w;
  if (options.reduction == Reduction::Mean) return sum(losses) / sum(w);
  return reduce(losses, options.reduction);
}

}  // namespace

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  MG_CHECK(input.defined() && target.defined(), "mse_loss: input and target must be defined");
  MG_CHECK(input.shape() == target.shape(), "mse_loss: input ", describe(input), " and target ", describe(target),
           " must have the same shape");
  Tensor diff = input - target;
  return reduce(diff * diff, reduction);
}

Tensor nll_loss(const Tensor& input, const Tensor& target, const NllLossOptions& options) {
  check_index_target("nll_loss", input, target);
  check_class_weight("nll_loss", options.weight, input);
  const PickedTargets picked = pick_targets("nll_loss", input, target, options.ignore_index);
  Tensor logp = squeeze(gather(classes_last(input), -1, unsqueeze(picked.safe, -1)), -1);
  Tensor w = target_weights(picked, options.weight);
  Tensor losses = neg(logp * w);
  if (options.reduction == Reduction::Mean) return sum(losses) / sum(w);
  return reduce(losses, options.reduction);
}

Tensor cross_entropy(const Tensor& input, const Tensor& target, const CrossEntropyOptions& options) {
  const char* op = "cross_entropy";
  const double s = options.label_smoothing;
  MG_CHECK(s >= 0.0 && s <= 1.0, op, ": label_smoothing must be in [0, 1], got ", s);
  MG_CHECK(input.defined() && target.defined(), op, ": input and target must be defined");
  MG_CHECK(is_floating(input.dtype()) && input.dim() >= 1, op, ": input must be floating [N, C, ...] or [C], got ",
           describe(input));
  check_class_weight(op, options.weight, input);
  if (!is_floating(target.dtype()) && s == 0.0) return cross_entropy_of_indices(input, target, options);
  const int64_t cdim = class_dim(input);
  const double classes = static_cast<double>(input.size(cdim));
  Tensor logp = log_softmax(input, cdim);

  if (is_floating(target.dtype())) {
    MG_CHECK(target.shape() == input.shape() && target.dtype() == input.dtype(), op, ": probability target ",
             describe(target), " must have input's shape and dtype (", describe(input), ")");
    Tensor t = s > 0.0 ? target * (1.0 - s) + s / classes : target;
    Tensor terms = logp * t;
    if (options.weight.defined()) terms = terms * along_classes(options.weight, input);
    Tensor losses = neg(sum(terms, {cdim}));
    if (options.reduction == Reduction::Mean) return sum(losses) / (static_cast<double>(input.numel()) / classes);
    return reduce(losses, options.reduction);
  }

  Tensor nll = nll_loss(logp, target, {options.weight, options.ignore_index, options.reduction});
  if (s == 0.0) return nll;
  // The uniform part of the smoothed target: -sum_c w_c log p_c per element, zero where ignored.
  check_index_target(op, input, target);
  const PickedTargets picked = pick_targets(op, input, target, options.ignore_index);
  Tensor weighted = options.weight.defined() ? logp * along_classes(options.weight, input) : logp;
  Tensor smooth = neg(sum(weighted, {cdim})) * picked.valid;
  Tensor smooth_reduced;
  if (options.reduction == Reduction::Mean)
    smooth_reduced = sum(smooth) / sum(target_weights(picked, options.weight));
  else
    smooth_reduced = reduce(smooth, options.reduction);
  return nll * (1.0 - s) + smooth_reduced * (s / classes);
}

Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target,
                                        const BceWithLogitsOptions& options) {
  const char* op = "binary_cross_entropy_with_logits";
  MG_CHECK(input.defined() && target.defined(), op, ": input and target must be defined");
  MG_CHECK(input.shape() == target.shape(), op, ": input ", describe(input), " and target ", describe(target),
           " must have the same shape");
  // (1 - t) x + (1 + (pos_weight - 1) t) softplus(-x): PyTorch's arrangement of the same sum.
  Tensor positive_scale = options.pos_weight.defined() ? 1.0 + (options.pos_weight - 1.0) * target : Tensor();
  Tensor tail = softplus(neg(input));
  Tensor losses = (1.0 - target) * input + (positive_scale.defined() ? positive_scale * tail : tail);
  if (options.weight.defined()) losses = losses * options.weight;
  return reduce(losses, options.reduction);
}

double accuracy(const Tensor& logits, const Tensor& labels) {
  MG_CHECK(logits.defined() && labels.defined() && logits.dim() >= 1, "accuracy: logits and labels must be defined");
  MG_CHECK(labels.dtype() == kInt64, "accuracy: labels must be int64, got ", describe(labels));
  Tensor predicted = argmax(logits.detach(), class_dim(logits));
  MG_CHECK(predicted.shape() == labels.shape(), "accuracy: labels ", describe(labels), " do not match logits ",
           describe(logits));
  if (labels.numel() == 0) return 0.0;
  const std::vector<int64_t> p = predicted.to_vector<int64_t>(), l = labels.to_vector<int64_t>();
  int64_t hits = 0;
  for (std::size_t i = 0; i < p.size(); ++i) hits += p[i] == l[i] ? 1 : 0;
  return static_cast<double>(hits) / static_cast<double>(p.size());
}

}  // namespace mg::nn
