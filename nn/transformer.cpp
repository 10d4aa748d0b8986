#include "transformer.h"

#include <string>

#include "../autograd/ops.h"

namespace mg::nn {
namespace {

void check_options(const char* who, const TransformerLayerOptions& o) {
  MG_CHECK(o.d_model > 0 && o.nhead > 0 && o.d_model % o.nhead == 0, who, ": d_model ", o.d_model,
           " must be a positive multiple of nhead ", o.nhead);
  MG_CHECK(o.dim_feedforward > 0, who, ": dim_feedforward must be positive, got ", o.dim_feedforward);
}

}  // namespace

TransformerEncoderLayer::TransformerEncoderLayer(const TransformerLayerOptions& o, Generator* gen) : options_(o) {
  check_options("TransformerEncoderLayer", o);
  // Registration order is PyTorch's, so named_parameters() lists the same names in the same order.
  self_attn_ =
      register_module("self_attn", std::make_shared<MultiheadAttention>(o.d_model, o.nhead, o.dropout, o.bias, gen));
  linear1_ = register_module("linear1", std::make_shared<Linear>(o.d_model, o.dim_feedforward, o.bias, gen));
  dropout_ = register_module("dropout", std::make_shared<Dropout>(o.dropout, gen));
  linear2_ = register_module("linear2", std::make_shared<Linear>(o.dim_feedforward, o.d_model, o.bias, gen));
  norm1_ = register_module("norm1", std::make_shared<LayerNorm>(o.d_model, o.layer_norm_eps, true));
  norm2_ = register_module("norm2", std::make_shared<LayerNorm>(o.d_model, o.layer_norm_eps, true));
  dropout1_ = register_module("dropout1", std::make_shared<Dropout>(o.dropout, gen));
  dropout2_ = register_module("dropout2", std::make_shared<Dropout>(o.dropout, gen));
}

Tensor TransformerEncoderLayer::forward(const Params& p, const Tensor& src) { return forward(p, src, {}); }

Tensor TransformerEncoderLayer::forward(const Params& p, const Tensor& src, const functional::AttentionMasks& masks) {
  auto self_attention = [&](const Tensor& x) {
    return dropout1_->forward(p.sub("dropout1"), self_attn_->forward(p.sub("self_attn"), x, x, x, masks).output);
  };
  auto feed_forward = [&](const Tensor& x) {
    Tensor h = functional::activation(linear1_->forward(p.sub("linear1"), x), options_.activation);
    h = linear2_->forward(p.sub("linear2"), dropout_->forward(p.sub("dropout"), h));
    return dropout2_->forward(p.sub("dropout2"), h);
  };
  auto norm1 = [&](const Tensor& x) { return norm1_->forward(p.sub("norm1"), x); };
  auto norm2 = [&](const Tensor& x) { return norm2_->forward(p.sub("norm2"), x); };
  Tensor x = src;
  if (options_.norm_first) {
    x = x + self_attention(norm1(x));
    x = x + feed_forward(norm2(x));
  } else {
    x = norm1(x + self_attention(x));
    x = norm2(x + feed_forward(x));
  }
  return x;
}

TransformerDecoderLayer::TransformerDecoderLayer(const TransformerLayerOptions& o, Generator* gen) : options_(o) {
  check_options("TransformerDecoderLayer", o);
  self_attn_ =
      register_module("self_attn", std::make_shared<MultiheadAttention>(o.d_model, o.nhead, o.dropout, o.bias, gen));
  multihead_attn_ = register_module("multihead_attn",
                                    std::make_shared<MultiheadAttention>(o.d_model, o.nhead, o.dropout, o.bias, gen));
  linear1_ = register_module("linear1", std::make_shared<Linear>(o.d_model, o.dim_feedforward, o.bias, gen));
  dropout_ = register_module("dropout", std::make_shared<Dropout>(o.dropout, gen));
  linear2_ = register_module("linear2", std::make_shared<Linear>(o.dim_feedforward, o.d_model, o.bias, gen));
  norm1_ = register_module("norm1", std::make_shared<LayerNorm>(o.d_model, o.layer_norm_eps, true));
  norm2_ = register_module("norm2", std::make_shared<LayerNorm>(o.d_model, o.layer_norm_eps, true));
  norm3_ = register_module("norm3", std::make_shared<LayerNorm>(o.d_model, o.layer_norm_eps, true));
  dropout1_ = register_module("dropout1", std::make_shared<Dropout>(o.dropout, gen));
  dropout2_ = register_module("dropout2", std::make_shared<Dropout>(o.dropout, gen));
  dropout3_ = register_module("dropout3", std::make_shared<Dropout>(o.dropout, gen));
}

Tensor TransformerDecoderLayer::forward(const Params& p, const Tensor& tgt, const Tensor& memory,
                                        const DecoderMasks& masks) {
  auto self_attention = [&](const Tensor& x) {
    return dropout1_->forward(p.sub("dropout1"), self_attn_->forward(p.sub("self_attn"), x, x, x, masks.tgt).output);
  };
  auto cross_attention = [&](const Tensor& x) {
    return dropout2_->forward(
        p.sub("dropout2"), multihead_attn_->forward(p.sub("multihead_attn"), x, memory, memory, masks.memory).output);
  };
  auto feed_forward = [&](const Tensor& x) {
    Tensor h = functional::activation(linear1_->forward(p.sub("linear1"), x), options_.activation);
    h = linear2_->forward(p.sub("linear2"), dropout_->forward(p.sub("dropout"), h));
    return dropout3_->forward(p.sub("dropout3"), h);
  };
  auto norm = [&](const std::shared_ptr<LayerNorm>& n, const char* name, const Tensor& x) {
    return n->forward(p.sub(name), x);
  };
  Tensor x = tgt;
  if (options_.norm_first) {
    x = x + self_attention(norm(norm1_, "norm1", x));
    x = x + cross_attention(norm(norm2_, "norm2", x));
    x = x + feed_forward(norm(norm3_, "norm3", x));
  } else {
    x = norm(norm1_, "norm1", x + self_attention(x));
    x = norm(norm2_, "norm2", x + cross_attention(x));
    x = norm(norm3_, "norm3", x + feed_forward(x));
  }
  return x;
}

TransformerEncoder::TransformerEncoder(const TransformerLayerOptions& options, int64_t num_layers, bool final_norm,
                                       Generator* gen) {
  MG_CHECK(num_layers >= 0, "TransformerEncoder: num_layers must be non-negative, got ", num_layers);
  auto list = register_module("layers", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < num_layers; ++i) {
    layers_.push_back(std::make_shared<TransformerEncoderLayer>(options, gen));
    list->push_back(layers_.back());
  }
  if (final_norm) norm_ = register_module("norm", std::make_shared<LayerNorm>(options.d_model, options.layer_norm_eps));
}

Tensor TransformerEncoder::forward(const Params& p, const Tensor& src) { return forward(p, src, {}); }

Tensor TransformerEncoder::forward(const Params& p, const Tensor& src, const functional::AttentionMasks& masks) {
  const Params layers = p.sub("layers");
  Tensor x = src;
  for (std::size_t i = 0; i < layers_.size(); ++i) x = layers_[i]->forward(layers.sub(std::to_string(i)), x, masks);
  return norm_ ? norm_->forward(p.sub("norm"), x) : x;
}

TransformerDecoder::TransformerDecoder(const TransformerLayerOptions& options, int64_t num_layers, bool final_norm,
                                       Generator* gen) {
  MG_CHECK(num_layers >= 0, "TransformerDecoder: num_layers must be non-negative, got ", num_layers);
  auto list = register_module("layers", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < num_layers; ++i) {
    layers_.push_back(std::make_shared<TransformerDecoderLayer>(options, gen));
    list->push_back(layers_.back());
  }
  if (final_norm) norm_ = register_module("norm", std::make_shared<LayerNorm>(options.d_model, options.layer_norm_eps));
}

Tensor TransformerDecoder::forward(const Params& p, const Tensor& tgt, const Tensor& memory,
                                   const DecoderMasks& masks) {
  const Params layers = p.sub("layers");
  Tensor x = tgt;
  for (std::size_t i = 0; i < layers_.size(); ++i)
    x = layers_[i]->forward(layers.sub(std::to_string(i)), x, memory, masks);
  return norm_ ? norm_->forward(p.sub("norm"), x) : x;
}

}  // namespace mg::nn
