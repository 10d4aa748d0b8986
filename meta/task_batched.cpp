#include "task_batched.h"

#include <string>

#include "../autograd/grad_mode.h"
#include "../autograd/ops.h"
#include "../nn/losses.h"
#include "inner_loop.h"

namespace mg::meta {

nn::TensorDict expand_for_tasks(const nn::TensorDict& params, int64_t tasks) {
  MG_CHECK(tasks >= 1, "expand_for_tasks: the number of tasks must be >= 1, got ", tasks);
  return params.map([tasks](const Tensor& p) {
    Shape shape{tasks};
    shape.insert(shape.end(), p.shape().begin(), p.shape().end());
    return expand(unsqueeze(p, 0), shape);
  });
}

Tensor batched_mse(const Tensor& output, const Tensor& target) {
  MG_CHECK(output.defined() && target.defined(), "batched_mse: output and target must be defined");
  MG_CHECK(output.dim() >= 2 && output.shape() == target.shape(), "batched_mse: output ", describe(output),
           " and target ", describe(target), " must have the same shape [T, N, ...]");
  const Tensor diff = output - target;
  std::vector<int64_t> within_task;
  for (int64_t d = 1; d < output.dim(); ++d) within_task.push_back(d);
  return mean(diff * diff, within_task);
}

Tensor batched_cross_entropy(const Tensor& logits, const Tensor& target) {
  MG_CHECK(logits.defined() && target.defined(), "batched_cross_entropy: logits and target must be defined");
  MG_CHECK(
      logits.dim() == 3 && target.dim() == 2 && target.size(0) == logits.size(0) && target.size(1) == logits.size(1),
      "batched_cross_entropy: expected logits [T, N, C] and target [T, N], got logits ", describe(logits),
      " and target ", describe(target));
  const int64_t tasks = logits.size(0), n = logits.size(1);
  const Tensor losses = nn::cross_entropy(reshape(logits, {tasks * n, logits.size(2)}), reshape(target, {tasks * n}),
                                          {.reduction = nn::Reduction::None});
  return mean(reshape(losses, {tasks, n}), {1});
}

BatchedTaskLoss maml_batched_loss(nn::Module& model, const nn::TensorDict& params, const TaskBatch& batch,
                                  const BatchedLossFn& loss, const MamlOptions& options,
                                  const nn::TensorDict* learned_lrs) {
  const int64_t tasks = batch.size();
  MG_CHECK(tasks >= 1, "maml_batched_loss: the task batch is empty");
  auto check_tasks = [&](const char* name, const Tensor& field) {
    MG_CHECK(field.defined() && field.dim() >= 1 && field.size(0) == tasks, "maml_batched_loss: ", name, " ",
             field.defined() ? describe(field) : std::string("undefined"), " does not have the ", tasks,
             " tasks of support_x ", describe(batch.support_x), " in its leading dim");
  };
  check_tasks("support_y", batch.support_y);
  check_tasks("query_x", batch.query_x);
  check_tasks("query_y", batch.query_y);
  const bool multi_step = !options.multi_step_weights.empty();
  MG_CHECK(!multi_step || static_cast<int>(options.multi_step_weights.size()) == options.inner.steps,
           "maml_batched_loss: ", options.multi_step_weights.size(), " multi-step loss weights for ",
           options.inner.steps, " inner steps");

  auto per_task_loss = [&loss, tasks](const Tensor& output, const Tensor& target) {
    Tensor per_task = loss(output, target);
    MG_CHECK(per_task.dim() == 1 && per_task.size(0) == tasks, "maml_batched_loss: the loss gave ",
             describe(per_task), ", not one value per task [", tasks, "]");
    return per_task;
  };
  const LossFn summed = [&per_task_loss](const Tensor& output, const Tensor& target) {
    return sum(per_task_loss(output, target));
  };
  const Adaptation adapted = adapt(model, expand_for_tasks(params, tasks), batch.support_x, batch.support_y, summed,
                                   options.inner, learned_lrs, multi_step);
  BatchedTaskLoss result;
  for (const Tensor& summed : adapted.support_losses)
    result.support_losses.push_back(summed / static_cast<double>(tasks));

  // One query pass of every task (weight: MAML++'s weight of this step's loss, 1 for plain MAML).
  auto add_query_pass = [&](const nn::TensorDict& fast, double weight) {
    const Tensor output = model.forward(nn::Params(fast), batch.query_x);
    const Tensor per_task = per_task_loss(output, batch.query_y);
    Tensor term = sum(per_task) / static_cast<double>(tasks);
    if (multi_step) term = term * weight;
    result.query_loss = result.query_loss.defined() ? result.query_loss + term : term;
    result.query_output = output.detach();
    const Tensor values = multi_step ? per_task.detach() * weight : per_task.detach();
    result.task_query_losses = result.task_query_losses.defined() ? result.task_query_losses + values : values;
  };
  if (!multi_step) {
    add_query_pass(adapted.params, 1.0);
    return result;
  }
  for (int step = 0; step < options.inner.steps; ++step) {
    model.set_inner_step(step + 1);
    add_query_pass(adapted.history[static_cast<std::size_t>(step)], options.multi_step_weights[step]);
  }
  return result;
}

}  // namespace mg::meta
