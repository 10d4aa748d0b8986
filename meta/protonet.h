#pragma once
// Prototypical Networks (Snell et al. 2017): a class's prototype is the mean embedding of its
// support examples; a query is classified by its negative squared Euclidean distance to each
// prototype. There is no inner loop: the embedding network is trained through this loss.
#include "../nn/module.h"
#include "task.h"

namespace mg::meta {

struct ProtoOutput {
  Tensor loss;    // cross-entropy of the query set (differentiable)
  Tensor logits;  // [queries, ways] negative squared distances (detached)
};

// Labels must be int64 in [0, ways). The model maps a batch of inputs to [batch, ...] embeddings
// (flattened here).
ProtoOutput protonet_loss(nn::Module& model, const nn::Params& params, const Task& task, int64_t ways);

}  // namespace mg::meta
