#include "maml.h"

#include <algorithm>

#include "../autograd/ops.h"

namespace mg::meta {

TaskLoss maml_task_loss(nn::Module& model, const nn::TensorDict& params, const Task& task, const LossFn& loss,
                        const MamlOptions& options, const nn::TensorDict* learned_lrs) {
  const bool multi_step = !options.multi_step_weights.empty();
  MG_CHECK(!multi_step || static_cast<int>(options.multi_step_weights.size()) == options.inner.steps,
           "maml: ", options.multi_step_weights.size(), " multi-step loss weights for ", options.inner.steps,
           " inner steps");
  Adaptation adapted =
      adapt(model, params, task.support_x, task.support_y, loss, options.inner, learned_lrs, multi_step);
  TaskLoss result;
  result.support_losses = adapted.support_losses;
  if (!multi_step) {
    Tensor output = model.forward(nn::Params(adapted.params), task.query_x);
    result.query_loss = loss(output, task.query_y);
    result.query_output = output.detach();
    return result;
  }
  for (int step = 0; step < options.inner.steps; ++step) {
    model.set_inner_step(step + 1);
    Tensor output = model.forward(nn::Params(adapted.history[step]), task.query_x);
    Tensor term = loss(output, task.query_y) * options.multi_step_weights[step];
    result.query_loss = result.query_loss.defined() ? result.query_loss + term : term;
    if (step + 1 == options.inner.steps) result.query_output = output.detach();
  }
  return result;
}

std::vector<double> multi_step_loss_weights(int steps, int64_t iteration, int64_t anneal_iterations) {
  MG_CHECK(steps > 0, "multi_step_loss_weights: steps must be positive, got ", steps);
  std::vector<double> weights(steps, 1.0 / steps);
  if (steps == 1) return weights;
  const double decay = 1.0 / steps / std::max<int64_t>(anneal_iterations, 1);
  const double floor = 0.03 / steps;
  double rest = 1.0;
  for (int i = 0; i + 1 < steps; ++i) {
    weights[i] = std::max(1.0 / steps - static_cast<double>(iteration) * decay, floor);
    rest -= weights[i];
  }
  weights[steps - 1] = rest;
  return weights;
}

}  // namespace mg::meta
