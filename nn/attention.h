#pragma once
#include <cstdint>
#include <memory>

#include "../tensor/creation.h"
#include "functional.h"
#include "linear.h"
#include "module.h"

namespace mg::nn {

// Batch-first multi-head attention with PyTorch's parameter layout: in_proj_weight [3E, E],
// in_proj_bias [3E], out_proj (a Linear: out_proj.weight, out_proj.bias). Key and value have
// the query's embedding size (no kdim/vdim, bias_k/bias_v or add_zero_attn). Init as PyTorch:
// xavier_uniform in_proj_weight, zero biases, out_proj.weight as a Linear.
// Masks and the treatment of fully masked rows: see functional::AttentionMasks.
class MultiheadAttention : public Module {
 public:
  MultiheadAttention(int64_t embed_dim, int64_t num_heads, double dropout = 0.0, bool bias = true,
                     Generator* gen = nullptr);
  std::string type_name() const override { return "MultiheadAttention"; }

  using Module::forward;
  // Self-attention of x [B, L, E], no masks.
  Tensor forward(const Params& params, const Tensor& x) override;
  // Unlike PyTorch, the attention weights are only computed when asked for (need_weights).
  functional::MultiHeadAttentionOutput forward(const Params& params, const Tensor& query, const Tensor& key,
                                               const Tensor& value, const functional::AttentionMasks& masks = {},
                                               bool need_weights = false, bool average_attn_weights = true);
  functional::MultiHeadAttentionOutput forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                               const functional::AttentionMasks& masks = {}, bool need_weights = false,
                                               bool average_attn_weights = true) {
    return forward(Params(*this), query, key, value, masks, need_weights, average_attn_weights);
  }
  void reset_parameters(Generator* gen = nullptr);

  int64_t embed_dim() const { return embed_dim_; }
  int64_t num_heads() const { return num_heads_; }
  double dropout() const { return dropout_; }
  bool concurrent_forward() const override {
    return (dropout_ == 0.0 || !is_training()) && Module::concurrent_forward();
  }
  Generator& generator() { return generator_; }  // for the attention-weight dropout

 private:
  int64_t embed_dim_;
  int64_t num_heads_;
  double dropout_;
  bool bias_;
  std::shared_ptr<Linear> out_proj_;
  Generator generator_;
};

}  // namespace mg::nn
