#pragma once
// One differentiable inner loop for the MAML family: functional SGD on a set of named
// parameters (fast weights), run through the model with nn::Params. Second order when the
// inner gradients are recorded (create_graph), first order when they are treated as constants;
// learned learning rates (Meta-SGD per element, MAML++ per tensor and step) are tensors that
// receive meta-gradients like any parameter; ANIL adapts only the parameters under a prefix.
#include <functional>
#include <string>
#include <vector>

#include "../nn/module.h"
#include "../nn/tensor_dict.h"

namespace mg::meta {

// loss(model output, target) -> scalar.
using LossFn = std::function<Tensor(const Tensor& output, const Tensor& target)>;

enum class LearnedLr {
  None,              // a fixed scalar learning rate
  PerElement,        // Meta-SGD: one rate per parameter element (same shape as the parameter)
  PerTensorPerStep,  // MAML++: one rate per parameter tensor and inner step (shape [steps])
};

struct InnerLoopOptions {
  int steps = 1;
  double lr = 0.01;           // the fixed rate, and the initial value of learned ones
  bool second_order = true;   // false: first-order MAML
  // Only parameters whose names start with one of these adapt (ANIL: the head); empty: all adapt.
  std::vector<std::string> adapt_prefixes{};
  LearnedLr learned_lr = LearnedLr::None;
};

bool adapts(const InnerLoopOptions& options, const std::string& name);

// Learned rates for the adapted parameters, initialised to options.lr, requiring grad. Keys are
// the parameter names.
nn::TensorDict make_learned_lrs(const nn::TensorDict& params, const InnerLoopOptions& options);

struct Adaptation {
  nn::TensorDict params;                // after the last step
  std::vector<nn::TensorDict> history;  // after each step (only when asked for)
  std::vector<double> support_losses;   // before each step
};

// Runs options.steps steps of p <- p - lr * dL_support/dp from params. Before step s the model
// is told set_inner_step(s) (for per-step BatchNorm statistics).
Adaptation adapt(nn::Module& model, const nn::TensorDict& params, const Tensor& support_x, const Tensor& support_y,
                 const LossFn& loss, const InnerLoopOptions& options, const nn::TensorDict* learned_lrs = nullptr,
                 bool keep_history = false);

}  // namespace mg::meta
