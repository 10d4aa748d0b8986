#pragma once
// Functional forms of the layers: every parameter is an argument, so the same code runs with a
// module's own weights or with MAML's fast weights. Each is composed of differentiable ops
// (autograd/ops.h) only, which is what makes every layer differentiable to any order.
#include <cstdint>
#include <optional>

#include "../tensor/creation.h"
#include "../tensor/tensor.h"

namespace mg::nn::functional {

// ---- per-task weights ----
//
// A meta-batch of T tasks can run as one computation in which every parameter has a leading task
// dim: [T, <its normal shape>], one set of fast weights per task. The layers recognise this from
// the weight's rank (one dim more than normal); the input then carries the same leading task dim,
// and task t's slice of the result is what the normal form gives for task t's slices of the input
// and weights. The contractions become batched GEMMs, one per task.

// Throws unless x has at least min_dims dims and a leading (task) dim equal to weight's, naming op
// and both tensors.
void check_task_dim(const char* op, const Tensor& x, int64_t min_dims, const Tensor& weight);

// x @ weight^T + bias; weight [out, in], bias [out] or undefined. Per task: weight [T, out, in],
// bias [T, out], x [T, ..., in].
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// Normalises over the trailing dims given by normalized_shape (biased variance, as PyTorch),
// then scales and shifts by weight and bias (either may be undefined). Per task: weight and bias
// [T, normalized_shape...], x [T, ..., normalized_shape...].
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);

// Zeroes each element with probability p and scales the rest by 1 / (1 - p); the identity when
// !training or p == 0. The mask comes from gen (default_generator() when null).
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);

// Rows of weight picked by int64 indices. Positions holding padding_idx look up their row as
// usual but pass no gradient to it, so that row stays as it was (PyTorch's semantics). Per task:
// weight [T, num, dim], indices [T, ...], each task's indices reading its own table.
Tensor embedding(const Tensor& indices, const Tensor& weight, std::optional<int64_t> padding_idx = std::nullopt);

enum class Activation { ReLU, GELU, GELUTanh, Tanh, Sigmoid };
Tensor activation(const Tensor& x, Activation kind);

// ---- attention ----
//
// Mask conventions, as PyTorch's nn.MultiheadAttention: an int64 mask is boolean, nonzero means
// "do not attend" (PyTorch's True); a floating mask is added to the scores, and its -inf entries
// count as "do not attend".
//
// Masked scores are replaced (through where, so they take no gradient) by a large finite
// negative number rather than -inf: a partially masked row gets exactly zero weight there, just
// as with -inf, but nothing ever computes inf - inf. A row whose keys are all masked, which
// PyTorch turns into NaN, gets all-zero weights here: its output is zero (plus the output
// projection's bias) and it passes zero gradient, in forward and backward, to any order.
struct AttentionMasks {
  Tensor attn_mask{};         // [L, S] or [B * num_heads, L, S]
  Tensor key_padding_mask{};  // [B, S]
  bool is_causal = false;     // also mask key j > query i (combined with attn_mask if both are given)
};

// softmax(q k^T / sqrt(D) + mask) v for q [..., L, D], k [..., S, D], v [..., S, Dv]; attn_mask
// broadcastable to [..., L, S]. weights_out, when given, receives the attention weights
// (after dropout). Note: the mask convention is MultiheadAttention's (nonzero = masked), not that
// of PyTorch 2's F.scaled_dot_product_attention (True = attend).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& attn_mask = Tensor(), bool is_causal = false, double dropout_p = 0.0,
                                    bool training = false, Generator* gen = nullptr, Tensor* weights_out = nullptr);

struct MultiHeadAttentionWeights {
  Tensor in_proj_weight{};   // [3E, E]: query, key and value projections stacked
  Tensor in_proj_bias{};     // [3E] or undefined
  Tensor out_proj_weight{};  // [E, E]
  Tensor out_proj_bias{};    // [E] or undefined
};

struct MultiHeadAttentionOutput {
  Tensor output{};   // [B, L, E]
  Tensor weights{};  // [B, L, S] averaged over heads, or [B, H, L, S]; undefined unless need_weights
};

// Batch-first multi-head attention: query [B, L, E], key and value [B, S, E]. Per task (every
// weight with a leading T): query [T, B, L, E], key and value [T, B, S, E], key_padding_mask
// [T, B, S], a 3-D attn_mask [T * B * num_heads, L, S]; the output and weights gain the T dim.
MultiHeadAttentionOutput multi_head_attention_forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                                      int64_t num_heads, const MultiHeadAttentionWeights& weights,
                                                      const AttentionMasks& masks = {}, double dropout_p = 0.0,
                                                      bool training = false, Generator* gen = nullptr,
                                                      bool need_weights = false, bool average_attn_weights = true);

}  // namespace mg::nn::functional

namespace mg::nn {
namespace F = functional;
}  // namespace mg::nn
