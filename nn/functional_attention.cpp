// Attention written in differentiable primitives only (matmul, softmax, where, add, views), so
// that its second derivative (MAML through a transformer) is exact and gradgradcheck covers it.
#include <cmath>
#include <limits>

#include "../autograd/ops.h"
#include "../tensor/device_graph.h"
#include "functional.h"

namespace mg::nn::functional {
namespace {

// Finite, so that a fully masked row never meets inf - inf; far enough below any real score that
// exp(kMaskedScore - max) is exactly 0 in float32 and float64, as exp(-inf) would be.
constexpr double kMaskedScore = -1e30;

// A mask split into what is added to the scores and what blocks them. blocked is 0/1 in the
// scores' dtype; both broadcast against the scores.
struct MaskParts {
  Tensor additive;
  Tensor blocked;
};

void block(MaskParts& parts, const Tensor& blocked) {
  parts.blocked = parts.blocked.defined() ? maximum(parts.blocked, blocked) : blocked;
}

void add_mask(MaskParts& parts, const Tensor& mask, DType dtype) {
  if (!mask.defined()) return;
  if (mask.dtype() == kInt64) {
    block(parts, to_dtype(ne(mask, zeros({}, kInt64, mask.device())), dtype));
    return;
  }
  Tensor m = mask.dtype() == dtype ? mask : to_dtype(mask, dtype);
  Tensor minus_inf = eq(m.detach(), full({}, -std::numeric_limits<double>::infinity(), dtype, m.device()));
  // The host read only skips work; while a graph is captured (no host reads) the work is done,
  // with the same values.
  if (m.numel() > 0 && (capturing_graph(m.device()) || amax(minus_inf).item<double>() > 0)) {
    block(parts, minus_inf);
    m = where(minus_inf, zeros({}, dtype, m.device()), m);
  }
  parts.additive = parts.additive.defined() ? parts.additive + m : m;
}

Tensor causal_mask(int64_t L, int64_t S, DType dtype, Device device) {
  Tensor i = reshape(arange(static_cast<double>(L), kInt64, device), {L, 1});
  Tensor j = reshape(arange(static_cast<double>(S), kInt64, device), {1, S});
  return to_dtype(gt(j, i), dtype);
}

Tensor attend(const Tensor& q, const Tensor& k, const Tensor& v, const MaskParts& parts, double dropout_p,
              bool training, Generator* gen, Tensor* weights_out) {
  const double scale = std::sqrt(static_cast<double>(q.size(-1)));
  Tensor scores = matmul(q / scale, transpose(k, -2, -1));
  if (parts.additive.defined()) scores = scores + parts.additive;
  Tensor alive;
  if (parts.blocked.defined()) {
    scores = where(parts.blocked, full({}, kMaskedScore, scores.dtype(), scores.device()), scores);
    Tensor dead = amin(parts.blocked, {-1}, true);
    if (dead.numel() > 0 && (capturing_graph(dead.device()) || amax(dead).item<double>() > 0)) alive = 1.0 - dead;
  }
  Tensor weights = softmax(scores, -1);
  if (alive.defined()) weights = weights * alive;
  weights = dropout(weights, dropout_p, training, gen);
  if (weights_out) *weights_out = weights;
  return matmul(weights, v);
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask,
                                    bool is_causal, double dropout_p, bool training, Generator* gen,
                                    Tensor* weights_out) {
  MG_CHECK(q.defined() && k.defined() && v.defined(), "scaled_dot_product_attention: q, k, v must be defined");
  MG_CHECK(q.dim() >= 2 && k.dim() >= 2 && v.dim() >= 2 && q.size(-1) == k.size(-1) && k.size(-2) == v.size(-2),
           "scaled_dot_product_attention: q ", describe(q), ", k ", describe(k), ", v ", describe(v),
           " must be [..., L, D], [..., S, D], [..., S, Dv]");
  MaskParts parts;
  add_mask(parts, attn_mask, q.dtype());
  if (is_causal) block(parts, causal_mask(q.size(-2), k.size(-2), q.dtype(), q.device()));
  return attend(q, k, v, parts, dropout_p, training, gen, weights_out);
}

MultiHeadAttentionOutput multi_head_attention_forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                                      int64_t num_heads, const MultiHeadAttentionWeights& w,
                                                      const AttentionMasks& masks, double dropout_p, bool training,
                                                      Generator* gen, bool need_weights, bool average_attn_weights) {
  const char* op = "multi_head_attention";
  MG_CHECK(query.defined() && key.defined() && value.defined(), op, ": query, key and value must be defined");
  MG_CHECK(w.in_proj_weight.defined(), op, ": in_proj_weight must be defined");
  // Per-task weights add a task dim in front of the batch dim; the attention itself runs over
  // the T * B sequences folded into one batch.
  const bool per_task = w.in_proj_weight.dim() == 3;
  const int64_t lead = per_task ? 2 : 1;
  MG_CHECK(query.dim() == lead + 2 && key.dim() == lead + 2 && value.dim() == lead + 2, op,
           per_task ? ": per-task weights expect [T, B, L, E] query and [T, B, S, E] key and value, got query "
                    : ": expects batch-first [B, L, E] query and [B, S, E] key and value, got query ",
           describe(query), ", key ", describe(key), ", value ", describe(value));
  if (per_task) check_task_dim(op, query, 4, w.in_proj_weight);
  const Shape batch(query.shape().begin(), query.shape().begin() + lead);
  const int64_t B = numel_of(batch), L = query.size(-2), E = query.size(-1), S = key.size(-2);
  MG_CHECK(key.shape() == value.shape() && Shape(key.shape().begin(), key.shape().begin() + lead) == batch &&
               key.size(-1) == E,
           op, ": key ", describe(key), " and value ", describe(value), " must both be ", shape_str(batch), " + [S, ",
           E, "] for query ", describe(query));
  MG_CHECK(num_heads > 0 && E % num_heads == 0, op, ": embed dim ", E, " is not divisible by num_heads ", num_heads);
  MG_CHECK(w.in_proj_weight.dim() == lead + 1 && w.in_proj_weight.size(-2) == 3 * E && w.in_proj_weight.size(-1) == E,
           op, ": in_proj_weight must be [", 3 * E, ", ", E, "] (or [T, ", 3 * E, ", ", E, "] per task), got ",
           describe(w.in_proj_weight));
  const int64_t H = num_heads, D = E / H;

  // Three projections from row blocks of in_proj_weight, even for self-attention, where PyTorch
  // runs one GEMM and narrows its output: the gradient of each narrow of a [B, L, 3E] output is a
  // zero-padded [B, L, 3E] tensor, three of them added (W-tf: 2-3% of its step); a narrow of the
  // weight pads only [3E, E]. Each output element is the same dot product either way.
  auto project = [&](const Tensor& input, int64_t part) {
    const Tensor bias = w.in_proj_bias.defined() ? narrow(w.in_proj_bias, -1, part * E, E) : Tensor();
    return linear(input, narrow(w.in_proj_weight, -2, part * E, E), bias);
  };
  Tensor q = project(query, 0), k = project(key, 1), v = project(value, 2);
  auto heads = [&](const Tensor& t, int64_t len) { return transpose(reshape(t, {B, len, H, D}), 1, 2); };
  // k and v are copied out of the projection's output once, so that neither the products nor
  // their backward copy them again (q is scaled first, which makes it contiguous).
  q = heads(q, L), k = contiguous(heads(k, S)), v = contiguous(heads(v, S));

  MaskParts parts;
  if (masks.attn_mask.defined()) {
    const Tensor& m = masks.attn_mask;
    if (m.dim() == 2) {
      MG_CHECK(m.size(0) == L && m.size(1) == S, op, ": attn_mask ", describe(m), " must be [", L, ", ", S, "]");
      add_mask(parts, m, q.dtype());
    } else {
      MG_CHECK(m.dim() == 3 && m.size(0) == B * H && m.size(1) == L && m.size(2) == S, op, ": attn_mask ", describe(m),
               " must be [", L, ", ", S, "] or [", B * H, ", ", L, ", ", S, "]");
      add_mask(parts, reshape(m, {B, H, L, S}), q.dtype());
    }
  }
  if (masks.key_padding_mask.defined()) {
    const Tensor& m = masks.key_padding_mask;
    Shape expected = batch;
    expected.push_back(S);
    MG_CHECK(m.shape() == expected, op, ": key_padding_mask ", describe(m), " must be ", shape_str(expected));
    add_mask(parts, reshape(m, {B, 1, 1, S}), q.dtype());
  }
  if (masks.is_causal) block(parts, causal_mask(L, S, q.dtype(), q.device()));

  MultiHeadAttentionOutput out;
  Tensor attn_weights;
  Tensor heads_out = attend(q, k, v, parts, dropout_p, training, gen, need_weights ? &attn_weights : nullptr);
  Shape output_shape = batch;
  output_shape.insert(output_shape.end(), {L, E});
  out.output = linear(reshape(transpose(heads_out, 1, 2), output_shape), w.out_proj_weight, w.out_proj_bias);
  if (need_weights) {
    out.weights = average_attn_weights ? sum(attn_weights, {1}) / static_cast<double>(H) : attn_weights;
    if (per_task) {
      Shape weights_shape = batch;
      weights_shape.insert(weights_shape.end(), out.weights.shape().begin() + 1, out.weights.shape().end());
      out.weights = reshape(out.weights, weights_shape);
    }
  }
  return out;
}

}  // namespace mg::nn::functional
