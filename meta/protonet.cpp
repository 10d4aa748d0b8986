#include "protonet.h"

#include "../autograd/ops.h"
#include "../nn/losses.h"
#include "../tensor/kernels.h"

namespace mg::meta {

ProtoOutput protonet_loss(nn::Module& model, const nn::Params& params, const Task& task, int64_t ways) {
  MG_CHECK(ways > 0, "protonet: ways must be positive, got ", ways);
  MG_CHECK(task.support_y.dtype() == kInt64 && task.query_y.dtype() == kInt64,
           "protonet: labels must be int64, got support ", describe(task.support_y), " and query ",
           describe(task.query_y));
  Tensor support = model.forward(params, task.support_x);
  Tensor query = model.forward(params, task.query_x);
  support = support.reshape({support.size(0), -1});
  query = query.reshape({query.size(0), -1});

  // one_hot [ways, n_support] @ support [n_support, d] / counts = class means.
  Tensor classes = arange(static_cast<double>(ways), kInt64, support.device()).reshape({ways, 1});
  Tensor one_hot = eq(classes, task.support_y.reshape({1, -1})).to(support.dtype());
  Tensor counts = one_hot.sum({1}, true);
  MG_CHECK(kernels::reduce(ReduceOp::Min, counts, {}, false).item() > 0,
           "protonet: a class in 0..", ways - 1, " has no support example");
  Tensor prototypes = matmul(one_hot, support) / counts;

  // |q - p|^2 = |q|^2 - 2 q.p + |p|^2
  Tensor distances = (query * query).sum({1}, true) - matmul(query, prototypes.t()) * 2.0 +
                     (prototypes * prototypes).sum({1}).reshape({1, ways});
  Tensor logits = -distances;
  return {nn::cross_entropy(logits, task.query_y), logits.detach()};
}

}  // namespace mg::meta
