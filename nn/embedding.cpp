#include "embedding.h"

#include "../autograd/grad_mode.h"
#include "../autograd/ops.h"
#include "functional.h"
#include "init.h"

namespace mg::nn {

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, std::optional<int64_t> padding_idx, Generator* gen)
    : num_embeddings_(num_embeddings), embedding_dim_(embedding_dim) {
  MG_CHECK(num_embeddings >= 0 && embedding_dim >= 0, "Embedding: sizes must be non-negative, got ", num_embeddings,
           " x ", embedding_dim);
  if (padding_idx) {
    MG_CHECK(*padding_idx >= -num_embeddings && *padding_idx < num_embeddings, "Embedding: padding_idx ", *padding_idx,
             " is out of range for ", num_embeddings, " embeddings");
    padding_idx_ = *padding_idx < 0 ? *padding_idx + num_embeddings : *padding_idx;
  }
  register_parameter("weight", zeros({num_embeddings, embedding_dim}));
  reset_parameters(gen);
}

void Embedding::reset_parameters(Generator* gen) {
  Tensor w = param("weight");
  init::normal_(w, 0.0, 1.0, gen);
  if (padding_idx_) {
    NoGradGuard no_grad;
    select(w, 0, *padding_idx_).fill_(0.0);
  }
}

Tensor Embedding::forward(const Params& params, const Tensor& indices) {
  return functional::embedding(indices, params["weight"], padding_idx_);
}

}  // namespace mg::nn
