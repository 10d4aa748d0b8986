#pragma once
// Losses with PyTorch's definitions (torch.nn.functional), composed of differentiable ops so
// that they can sit at the end of a MAML inner loop and be differentiated twice.
#include <cstdint>

#include "../tensor/tensor.h"

namespace mg::nn {

enum class Reduction { None, Mean, Sum };

// Mean (or sum) of (input - target)^2; input and target must have the same shape.
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean);

struct NllLossOptions {
  Tensor weight{};              // [C] per-class weights, or undefined
  int64_t ignore_index = -100;  // targets equal to it contribute nothing
  Reduction reduction = Reduction::Mean;
};

// input: log-probabilities [N, C], [N, C, d1, ...] or [C]; target: int64 class indices [N],
// [N, d1, ...] or []. Mean divides by the summed weight of the targets not ignored (so a batch
// whose targets are all ignored gives NaN, as in PyTorch).
Tensor nll_loss(const Tensor& input, const Tensor& target, const NllLossOptions& options = {});

struct CrossEntropyOptions {
  Tensor weight{};              // [C] per-class weights, or undefined
  int64_t ignore_index = -100;  // only for class-index targets
  Reduction reduction = Reduction::Mean;
  double label_smoothing = 0.0;  // in [0, 1]: the target becomes (1 - s) one_hot + s / C
};

// log_softmax over the class dim (1, or 0 for a 1-D input) followed by nll_loss. target is either
// int64 class indices (shape as for nll_loss) or floating class probabilities of input's shape;
// for probabilities Mean divides by the number of samples. Class indices without label smoothing
// take one fused op per row (cross_entropy_rows in autograd/ops.h).
Tensor cross_entropy(const Tensor& input, const Tensor& target, const CrossEntropyOptions& options = {});

struct BceWithLogitsOptions {
  Tensor weight{};      // broadcast to input, rescales each element's loss
  Tensor pos_weight{};  // broadcast to input (usually [C]), weights the positive term
  Reduction reduction = Reduction::Mean;
};

// -[pos_weight t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))], written with softplus so it is
// finite for any logit and smooth (its derivatives of every order exist everywhere).
Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target,
                                        const BceWithLogitsOptions& options = {});

// Fraction of rows whose arg-max over the class dim (1, or 0 for a 1-D input) equals the int64
// label. Not differentiable.
double accuracy(const Tensor& logits, const Tensor& labels);

}  // namespace mg::nn
