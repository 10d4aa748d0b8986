#pragma once
#include <cstdint>
#include <optional>

#include "../tensor/creation.h"
#include "module.h"

namespace mg::nn {

// A lookup table [num_embeddings, embedding_dim] (parameter "weight") indexed by int64 tensors of
// any shape. Init N(0, 1), as PyTorch; the padding_idx row (negative counts from the end) starts
// at zero and never receives a gradient, so it stays whatever it is.
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, std::optional<int64_t> padding_idx = std::nullopt,
            Generator* gen = nullptr);
  std::string type_name() const override { return "Embedding"; }
  using Module::forward;
  Tensor forward(const Params& params, const Tensor& indices) override;
  void reset_parameters(Generator* gen = nullptr);

  int64_t num_embeddings() const { return num_embeddings_; }
  int64_t embedding_dim() const { return embedding_dim_; }
  std::optional<int64_t> padding_idx() const { return padding_idx_; }  // in [0, num_embeddings)

 private:
  int64_t num_embeddings_;
  int64_t embedding_dim_;
  std::optional<int64_t> padding_idx_;
};

}  // namespace mg::nn
