#include "reptile.h"

#include "../autograd/grad_mode.h"
#include "../autograd/ops.h"

namespace mg::meta {

nn::TensorDict reptile_direction(nn::Module& model, const nn::TensorDict& params, const Task& task, const LossFn& loss,
                                 const InnerLoopOptions& inner) {
  InnerLoopOptions first_order = inner;
  first_order.second_order = false;
  first_order.learned_lr = LearnedLr::None;
  // Start from detached copies so nothing is recorded back to the initialisation.
  nn::TensorDict start = params.map([](const Tensor& p) { return p.detach().requires_grad_(); });
  Adaptation adapted = adapt(model, start, task.support_x, task.support_y, loss, first_order);
  nn::TensorDict direction;
  NoGradGuard no_grad;
  for (const auto& [name, p] : params)
    if (adapts(inner, name)) direction.insert(name, p.detach() - adapted.params.at(name).detach());
  return direction;
}

}  // namespace mg::meta
