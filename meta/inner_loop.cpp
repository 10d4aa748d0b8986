#include "inner_loop.h"

#include "../autograd/grad.h"
#include "../autograd/ops.h"

namespace mg::meta {

bool adapts(const InnerLoopOptions& options, const std::string& name) {
  if (options.adapt_prefixes.empty()) return true;
  for (const std::string& prefix : options.adapt_prefixes)
    if (name.compare(0, prefix.size(), prefix) == 0) return true;
  return false;
}

nn::TensorDict make_learned_lrs(const nn::TensorDict& params, const InnerLoopOptions& options) {
  MG_CHECK(options.learned_lr != LearnedLr::None, "make_learned_lrs: options.learned_lr is None");
  nn::TensorDict lrs;
  for (const auto& [name, p] : params) {
    if (!adapts(options, name)) continue;
    Shape shape = options.learned_lr == LearnedLr::PerElement ? p.shape() : Shape{options.steps};
    lrs.insert(name, full(shape, options.lr, p.dtype(), p.device()).requires_grad_());
  }
  return lrs;
}

Adaptation adapt(nn::Module& model, const nn::TensorDict& params, const Tensor& support_x, const Tensor& support_y,
                 const LossFn& loss, const InnerLoopOptions& options, const nn::TensorDict* learned_lrs,
                 bool keep_history) {
  MG_CHECK(options.steps >= 0, "adapt: inner steps must be >= 0, got ", options.steps);
  MG_CHECK(options.learned_lr == LearnedLr::None || learned_lrs != nullptr,
           "adapt: learned learning rates were asked for but none were given");
  Adaptation result;
  result.params = params;
  std::vector<std::string> names;
  TensorList adapted;
  for (const auto& [name, p] : params) {
    if (!adapts(options, name)) continue;
    MG_CHECK(p.requires_grad(), "adapt: parameter '", name, "' does not require grad");
    names.push_back(name);
  }
  MG_CHECK(!names.empty() || options.steps == 0, "adapt: no parameter matches the adapt prefixes");

  for (int step = 0; step < options.steps; ++step) {
    model.set_inner_step(step);
    Tensor support_loss = loss(model.forward(nn::Params(result.params), support_x), support_y);
    result.support_losses.push_back(support_loss.detach().item());
    adapted.clear();
    for (const std::string& name : names) adapted.push_back(result.params.at(name));
    // Second order: the gradient carries its own graph, so the meta-gradient flows through it.
    TensorList grads = grad({support_loss}, adapted, {},
                            {.create_graph = options.second_order, .retain_graph = false, .allow_unused = true});
    nn::TensorDict next = result.params;
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (!grads[i].defined()) continue;
      Tensor g = options.second_order ? grads[i] : grads[i].detach();
      Tensor rate;
      switch (options.learned_lr) {
        case LearnedLr::None: next.set(names[i], adapted[i] - g * options.lr); continue;
        case LearnedLr::PerElement: rate = learned_lrs->at(names[i]); break;
        case LearnedLr::PerTensorPerStep: rate = learned_lrs->at(names[i]).select(0, step); break;
      }
      next.set(names[i], adapted[i] - rate * g);
    }
    result.params = std::move(next);
    if (keep_history) result.history.push_back(result.params);
  }
  model.set_inner_step(options.steps);
  return result;
}

}  // namespace mg::meta
