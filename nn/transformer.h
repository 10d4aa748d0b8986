#pragma once
// Transformer encoder and decoder layers and stacks with PyTorch's structure and names
// (self_attn, multihead_attn, linear1, linear2, norm1..3; stacks: layers.N, norm), batch-first.
// Post-norm (PyTorch's default) or pre-norm (norm_first), ReLU or GELU, dropout.
#include <cstdint>
#include <memory>
#include <vector>

#include "../tensor/creation.h"
#include "attention.h"
#include "dropout.h"
#include "functional.h"
#include "layer_norm.h"
#include "linear.h"
#include "module.h"
#include "sequential.h"

namespace mg::nn {

struct TransformerLayerOptions {
  int64_t d_model = 0;
  int64_t nhead = 1;
  int64_t dim_feedforward = 2048;
  double dropout = 0.1;
  functional::Activation activation = functional::Activation::ReLU;
  double layer_norm_eps = 1e-5;
  bool norm_first = false;
  bool bias = true;
};

// Masks of the decoder's two attentions: tgt for self-attention over the target, memory for the
// attention of the target to the memory.
struct DecoderMasks {
  functional::AttentionMasks tgt{};
  functional::AttentionMasks memory{};
};

class TransformerEncoderLayer : public Module {
 public:
  explicit TransformerEncoderLayer(const TransformerLayerOptions& options, Generator* gen = nullptr);
  std::string type_name() const override { return "TransformerEncoderLayer"; }
  using Module::forward;
  Tensor forward(const Params& params, const Tensor& src) override;  // no masks
  Tensor forward(const Params& params, const Tensor& src, const functional::AttentionMasks& masks);
  Tensor forward(const Tensor& src, const functional::AttentionMasks& masks) {
    return forward(Params(*this), src, masks);
  }
  const TransformerLayerOptions& options() const { return options_; }

 private:
  TransformerLayerOptions options_;
  std::shared_ptr<MultiheadAttention> self_attn_;
  std::shared_ptr<Linear> linear1_, linear2_;
  std::shared_ptr<Dropout> dropout_, dropout1_, dropout2_;
  std::shared_ptr<LayerNorm> norm1_, norm2_;
};

class TransformerDecoderLayer : public Module {
 public:
  explicit TransformerDecoderLayer(const TransformerLayerOptions& options, Generator* gen = nullptr);
  std::string type_name() const override { return "TransformerDecoderLayer"; }
  using Module::forward;
  Tensor forward(const Params& params, const Tensor& tgt, const Tensor& memory, const DecoderMasks& masks = {});
  Tensor forward(const Tensor& tgt, const Tensor& memory, const DecoderMasks& masks = {}) {
    return forward(Params(*this), tgt, memory, masks);
  }
  const TransformerLayerOptions& options() const { return options_; }

 private:
  TransformerLayerOptions options_;
  std::shared_ptr<MultiheadAttention> self_attn_, multihead_attn_;
  std::shared_ptr<Linear> linear1_, linear2_;
  std::shared_ptr<Dropout> dropout_, dropout1_, dropout2_, dropout3_;
  std::shared_ptr<LayerNorm> norm1_, norm2_, norm3_;
};

// num_layers encoder layers ("layers.0", ...) and, if final_norm, a LayerNorm "norm" at the end.
// Each layer is initialised on its own (PyTorch deep-copies one layer, so its layers start equal).
class TransformerEncoder : public Module {
 public:
  TransformerEncoder(const TransformerLayerOptions& options, int64_t num_layers, bool final_norm = false,
                     Generator* gen = nullptr);
  std::string type_name() const override { return "TransformerEncoder"; }
  using Module::forward;
  Tensor forward(const Params& params, const Tensor& src) override;
  Tensor forward(const Params& params, const Tensor& src, const functional::AttentionMasks& masks);
  Tensor forward(const Tensor& src, const functional::AttentionMasks& masks) {
    return forward(Params(*this), src, masks);
  }
  const std::vector<std::shared_ptr<TransformerEncoderLayer>>& layers() const { return layers_; }

 private:
  std::vector<std::shared_ptr<TransformerEncoderLayer>> layers_;
  std::shared_ptr<LayerNorm> norm_;
};

class TransformerDecoder : public Module {
 public:
  TransformerDecoder(const TransformerLayerOptions& options, int64_t num_layers, bool final_norm = false,
                     Generator* gen = nullptr);
  std::string type_name() const override { return "TransformerDecoder"; }
  using Module::forward;
  Tensor forward(const Params& params, const Tensor& tgt, const Tensor& memory, const DecoderMasks& masks = {});
  Tensor forward(const Tensor& tgt, const Tensor& memory, const DecoderMasks& masks = {}) {
    return forward(Params(*this), tgt, memory, masks);
  }
  const std::vector<std::shared_ptr<TransformerDecoderLayer>>& layers() const { return layers_; }

 private:
  std::vector<std::shared_ptr<TransformerDecoderLayer>> layers_;
  std::shared_ptr<LayerNorm> norm_;
};

}  // namespace mg::nn
