// linear, layer_norm, dropout, embedding, activations.
#include <string>

#include "../autograd/ops.h"
#include "../tensor/device_graph.h"
#include "../tensor/kernels.h"
#include "functional.h"

namespace mg::nn::functional {
namespace {

// weight [T, out, in]: the rows of each task, whatever dims lie between the task and feature
// dims, go through one GEMM with that task's weight.
Tensor linear_per_task(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_task_dim("linear", x, 2, weight);
  MG_CHECK(x.size(-1) == weight.size(2), "linear: input ", describe(x), " does not match per-task weight ",
           describe(weight), " (last dim must be ", weight.size(2), ")");
  if (bias.defined())
    MG_CHECK(bias.dim() == 2 && bias.size(0) == weight.size(0) && bias.size(1) == weight.size(1), "linear: bias ",
             describe(bias), " does not match per-task weight ", describe(weight));
  return affine(x, weight, bias);
}

// A layer_norm weight or bias, as a factor that broadcasts against x: a per-task one [T, ...]
// gets singleton dims between its task dim and normalized_shape.
Tensor layer_norm_affine(const char* what, const Tensor& p, const Tensor& x, const Shape& normalized_shape) {
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  if (p.dim() == k) {
    MG_CHECK(p.shape() == normalized_shape, "layer_norm: ", what, " ", describe(p), " does not have normalized_shape ",
             shape_str(normalized_shape));
    return p;
  }
  MG_CHECK(p.dim() == k + 1 && Shape(p.shape().begin() + 1, p.shape().end()) == normalized_shape, "layer_norm: ", what,
           " ", describe(p), " is neither normalized_shape ", shape_str(normalized_shape), " nor [T] + it");
  check_task_dim("layer_norm", x, k + 1, p);
  Shape shape(x.dim() - k, 1);
  shape[0] = p.size(0);
  shape.insert(shape.end(), normalized_shape.begin(), normalized_shape.end());
  return reshape(p, shape);
}

// weight [T, num, dim]: task t's table is rows [t * num, (t + 1) * num) of one stacked table.
Tensor embedding_per_task(const Tensor& indices, const Tensor& weight) {
  check_task_dim("embedding", indices, 1, weight);
  MG_CHECK(indices.dtype() == kInt64, "embedding: indices must be int64, got ", describe(indices));
  const int64_t tasks = weight.size(0), num = weight.size(1);
  Shape offset_shape(indices.dim(), 1);
  offset_shape[0] = tasks;
  const Tensor offsets = reshape(
      arange(0.0, static_cast<double>(tasks * num), static_cast<double>(num), kInt64, indices.device()), offset_shape);
  const Tensor table = reshape(weight, {tasks * num, weight.size(2)});
  // Checked here: once offset, an index past its own table would silently read the next task's.
  // While a graph is captured nothing can be read on the host (first_index_outside sees nothing):
  // such an index is sent past the end of all the tables instead, where the device kernel
  // selects NaN (cuda/cuda_index.cu).
  if (capturing_graph(indices.device())) {
    const Device device = indices.device();
    const Tensor inside = mul(ge(indices, full({}, 0.0, kInt64, device)),
                              lt(indices, full({}, static_cast<double>(num), kInt64, device)));
    return mg::embedding(table,
                         where(inside, indices + offsets, full({}, static_cast<double>(tasks * num), kInt64, device)));
  }
  const std::optional<kernels::IndexOutside> bad = kernels::first_index_outside(indices, num);
  MG_CHECK(!bad, "embedding: index ", bad->value, " is out of range for ", num, " embeddings (per-task weight ",
           describe(weight), ")");
  return mg::embedding(table, indices + offsets);
}

}  // namespace

void check_task_dim(const char* op, const Tensor& x, int64_t min_dims, const Tensor& weight) {
  MG_CHECK(x.defined() && x.dim() >= min_dims, op, ": per-task weight ", describe(weight),
           " needs a task-batched input [T, ...] of at least ", min_dims, " dims, got ",
           x.defined() ? describe(x) : std::string("undefined"));
  MG_CHECK(x.size(0) == weight.size(0), op, ": per-task weight ", describe(weight), " holds ", weight.size(0),
           " tasks but input ", describe(x), " has ", x.size(0), " in its leading (task) dim");
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  MG_CHECK(x.defined() && weight.defined(), "linear: input and weight must be defined");
  if (weight.dim() == 3) return linear_per_task(x, weight, bias);
  MG_CHECK(weight.dim() == 2, "linear: weight must be [out_features, in_features] (or [T, out, in] per task), got ",
           describe(weight));
  MG_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input ", describe(x), " does not match weight ",
           describe(weight), " (last dim must be ", weight.size(1), ")");
  if (bias.defined())
    MG_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "linear: bias ", describe(bias),
             " does not match weight ", describe(weight));
  return affine(x, weight, bias);
}

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  MG_CHECK(k >= 1 && x.dim() >= k, "layer_norm: input ", describe(x), " has fewer dims than normalized_shape ",
           shape_str(normalized_shape));
  for (int64_t i = 0; i < k; ++i)
    MG_CHECK(x.size(x.dim() - k + i) == normalized_shape[i], "layer_norm: input ", describe(x),
             " does not end in normalized_shape ", shape_str(normalized_shape));
  const Tensor w = weight.defined() ? layer_norm_affine("weight", weight, x, normalized_shape) : Tensor();
  const Tensor b = bias.defined() ? layer_norm_affine("bias", bias, x, normalized_shape) : Tensor();
  // The fused op, unless a parameter is per task [T, ...] (then the composite below).
  if ((!w.defined() || w.dim() == k) && (!b.defined() || b.dim() == k))
    return mg::layer_norm(x, normalized_shape, w, b, eps);
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < k; ++i) dims.push_back(x.dim() - k + i);
  Tensor centered = x - mean(x, dims, true);
  Tensor variance = mean(centered * centered, dims, true);
  Tensor y = centered * rsqrt(variance + eps);
  if (w.defined()) y = y * w;
  if (b.defined()) y = y + b;
  return y;
}

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  MG_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability must be in [0, 1], got ", p);
  if (!training || p == 0.0) return x;
  MG_CHECK(is_floating(x.dtype()), "dropout: needs a floating tensor, got ", describe(x));
  if (p == 1.0) return x * 0.0;
  // The mask is a constant of the graph: the same elements are dropped in every derivative.
  Tensor keep = ge(rand(x.shape(), x.dtype(), x.device(), gen), scalar(p, x.dtype(), x.device()));
  return x * (keep * (1.0 / (1.0 - p)));
}

Tensor embedding(const Tensor& indices, const Tensor& weight, std::optional<int64_t> padding_idx) {
  Tensor rows =
      weight.defined() && weight.dim() == 3 ? embedding_per_task(indices, weight) : mg::embedding(weight, indices);
  if (!padding_idx) return rows;
  int64_t pad = *padding_idx;
  const int64_t num = weight.size(-2);
  MG_CHECK(pad >= -num && pad < num, "embedding: padding_idx ", pad, " is out of range for ", num, " embeddings");
  if (pad < 0) pad += num;
  if (!rows.requires_grad()) return rows;
  Tensor is_pad = unsqueeze(eq(indices, full({}, static_cast<double>(pad), kInt64, indices.device())), -1);
  return where(is_pad, rows.detach(), rows);
}

Tensor activation(const Tensor& x, Activation kind) {
  switch (kind) {
    case Activation::ReLU:
      return relu(x);
    case Activation::GELU:
      return gelu(x);
    case Activation::GELUTanh:
      return gelu(x, GeluApproximation::Tanh);
    case Activation::Tanh:
      return tanh(x);
    case Activation::Sigmoid:
      return sigmoid(x);
  }
  MG_FAIL("activation: unknown kind ", static_cast<int>(kind));
}

}  // namespace mg::nn::functional
