#include "attention.h"

#include "dropout.h"
#include "init.h"

namespace mg::nn {

MultiheadAttention::MultiheadAttention(int64_t embed_dim, int64_t num_heads, double dropout, bool bias, Generator* gen)
    : embed_dim_(embed_dim), num_heads_(num_heads), dropout_(dropout), bias_(bias) {
  MG_CHECK(embed_dim > 0 && num_heads > 0 && embed_dim % num_heads == 0, "MultiheadAttention: embed_dim ", embed_dim,
           " must be a positive multiple of num_heads ", num_heads);
  MG_CHECK(dropout >= 0.0 && dropout <= 1.0, "MultiheadAttention: dropout must be in [0, 1], got ", dropout);
  register_parameter("in_proj_weight", zeros({3 * embed_dim, embed_dim}));
  if (bias) register_parameter("in_proj_bias", zeros({3 * embed_dim}));
  out_proj_ = register_module("out_proj", std::make_shared<Linear>(embed_dim, embed_dim, bias, gen));
  reset_parameters(gen);
  generator_ = Generator(draw_seed(gen));
}

void MultiheadAttention::reset_parameters(Generator* gen) {
  init::xavier_uniform_(param("in_proj_weight"), 1.0, gen);
  if (Tensor b = param("in_proj_bias"); b.defined()) init::zeros_(b);
  // PyTorch keeps out_proj.weight's Linear init (drawn when out_proj was built) and zeroes its bias.
  if (Tensor b = out_proj_->param("bias"); b.defined()) init::zeros_(b);
}

Tensor MultiheadAttention::forward(const Params& params, const Tensor& x) { return forward(params, x, x, x).output; }

functional::MultiHeadAttentionOutput MultiheadAttention::forward(const Params& params, const Tensor& query,
                                                                 const Tensor& key, const Tensor& value,
                                                                 const functional::AttentionMasks& masks,
                                                                 bool need_weights, bool average_attn_weights) {
  const Params out = params.sub("out_proj");
  functional::MultiHeadAttentionWeights w{params["in_proj_weight"], bias_ ? params["in_proj_bias"] : Tensor(),
                                          out["weight"], bias_ ? out["bias"] : Tensor()};
  return functional::multi_head_attention_forward(query, key, value, num_heads_, w, masks, dropout_, is_training(),
                                                  &generator_, need_weights, average_attn_weights);
}

}  // namespace mg::nn
