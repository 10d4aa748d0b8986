// linear, layer_norm, dropout, embedding, activations.
#include <string>

#include "../autograd/ops.h"
#include "functional.h"

namespace mg::nn::functional {

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  MG_CHECK(x.defined() && weight.defined(), "linear: input and weight must be defined");
  MG_CHECK(weight.dim() == 2, "linear: weight must be [out_features, in_features], got ", describe(weight));
  MG_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input ", describe(x), " does not match weight ",
           describe(weight), " (last dim must be ", weight.size(1), ")");
  Tensor y = matmul(x, weight.t());
  if (bias.defined()) {
    MG_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "linear: bias ", describe(bias),
             " does not match weight ", describe(weight));
    y = y + bias;
  }
  return y;
}

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  MG_CHECK(k >= 1 && x.dim() >= k, "layer_norm: input ", describe(x), " has fewer dims than normalized_shape ",
           shape_str(normalized_shape));
  for (int64_t i = 0; i < k; ++i)
    MG_CHECK(x.size(x.dim() - k + i) == normalized_shape[i], "layer_norm: input ", describe(x),
             " does not end in normalized_shape ", shape_str(normalized_shape));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < k; ++i) dims.push_back(x.dim() - k + i);
  Tensor centered = x - mean(x, dims, true);
  Tensor variance = mean(centered * centered, dims, true);
  Tensor y = centered * rsqrt(variance + eps);
  if (weight.defined()) {
    MG_CHECK(weight.shape() == normalized_shape, "layer_norm: weight ", describe(weight),
             " does not have normalized_shape ", shape_str(normalized_shape));
    y = y * weight;
  }
  if (bias.defined()) {
    MG_CHECK(bias.shape() == normalized_shape, "layer_norm: bias ", describe(bias), " does not have normalized_shape ",
             shape_str(normalized_shape));
    y = y + bias;
  }
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
  Tensor rows = mg::embedding(weight, indices);
  if (!padding_idx) return rows;
  int64_t pad = *padding_idx;
  const int64_t num = weight.size(0);
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
