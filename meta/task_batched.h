#pragma once
// A meta-batch of the MAML family as one computation rather than a loop over its tasks. Every
// parameter gets a leading task dim, [T, ...] (one set of fast weights per task), the tasks'
// sets are stacked [T, N, ...] (TaskBatch), and the layers, recognising per-task weights by their
// rank (nn/functional.h), run all T tasks through batched GEMMs: one forward and one backward per
// inner step for the whole meta-batch.
//
// The inner loop is meta::adapt() itself. The loss it differentiates is the sum over tasks of
// each task's loss; task t's loss depends only on slice t of the fast weights, so the gradient
// with respect to the [T, ...] fast weights is every task's own gradient, stacked, and each slice
// takes exactly the step the loop over tasks would take. The meta-gradient with respect to the
// shared initial parameters (through expand_for_tasks) equals the looped one up to rounding.
#include <cstdint>
#include <functional>
#include <vector>

#include "../nn/module.h"
#include "../nn/tensor_dict.h"
#include "maml.h"
#include "task.h"

namespace mg::meta {

// Every entry broadcast to [tasks, ...] (a view: no copy until the first inner step writes the
// per-task fast weights). Differentiable: the gradient reaching an original parameter is the sum
// over tasks of its slices' gradients.
nn::TensorDict expand_for_tasks(const nn::TensorDict& params, int64_t tasks);

// loss(output [T, N, ...], target [T, ...]) -> [T]: each task's loss, computed for all tasks at
// once. The inner loop differentiates their sum, whose gradient with respect to per-task weights
// is each task's own gradient; the per-task values come back without one pass per task.
using BatchedLossFn = std::function<Tensor(const Tensor& output, const Tensor& target)>;

// Each task's mean squared error, [T]; output and target [T, N, ...] alike.
Tensor batched_mse(const Tensor& output, const Tensor& target);
// Each task's mean cross-entropy, [T]; logits [T, N, C], target int64 [T, N].
Tensor batched_cross_entropy(const Tensor& logits, const Tensor& target);

struct BatchedTaskLoss {
  Tensor query_loss;    // mean over tasks of each task's query loss, differentiable (params, learned rates)
  Tensor query_output;  // the adapted models' outputs on the query sets, [T, Nq, ...] (detached)
  // Each task's query loss, [T] (detached; for MAML++ the weighted sum over steps), and the mean
  // over tasks of the support loss before each inner step (detached scalars). Left on the device:
  // reading them is the caller's choice.
  Tensor task_query_losses;
  TensorList support_losses;
};

// maml_task_loss for all tasks of the batch at once: query_loss is the mean over tasks of what
// maml_task_loss gives for each (MAML, first-order MAML, Meta-SGD, MAML++ per-step rates and
// multi-step loss, ANIL). params and learned_lrs have the model's own shapes: every parameter is
// expanded to [T, ...], the adapted ones and the others alike, so that each layer sees weights of
// one rank; the learned rates broadcast over the task dim. Throws mg::Error when the batch is
// empty or its fields disagree on T.
BatchedTaskLoss maml_batched_loss(nn::Module& model, const nn::TensorDict& params, const TaskBatch& batch,
                                  const BatchedLossFn& loss, const MamlOptions& options,
                                  const nn::TensorDict* learned_lrs = nullptr);

}  // namespace mg::meta
