#pragma once
// One differentiable inner loop for the MAML family: a functional optimizer (SGD, heavy-ball
// momentum or Adam, all written in differentiable ops) on a set of named parameters (fast
// weights), run through the model with nn::Params. Second order when the inner gradients are
// recorded (create_graph), first order when they are treated as constants; learned learning
// rates (Meta-SGD per element, MAML++ per tensor and step) are tensors that receive
// meta-gradients like any parameter; ANIL adapts only the parameters under a prefix.
//
// Memory: second-order MAML keeps every inner step's graph until the outer backward, so memory
// grows with the number of steps. With checkpoint set, adapt() keeps only each step's inputs
// (fast weights, optimizer state) and rebuilds one step's graph at a time during the backward
// pass (autograd/checkpoint.h): the same meta-gradient for one extra forward and inner backward
// per step. tests/meta_memory_test.cpp measures the difference.
#include <functional>
#include <string>
#include <vector>

#include "../autograd/node.h"
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

// The inner update p <- p - lr * d, with d from the support gradient g (per parameter tensor; t
// counts steps from 1; the learning rate lr is the fixed or learned one):
enum class InnerOptimizer {
  Sgd,       // d = g
  Momentum,  // heavy ball: v = momentum * v + g (v starts at 0), d = v
  // m = beta1 m + (1 - beta1) g, v = beta2 v + (1 - beta2) g^2 (both start at 0),
  // d = (m / (1 - beta1^t)) / sqrt(v / (1 - beta2^t) + eps^2). Adam's denominator is
  // sqrt(v_hat) + eps; the two agree at v = 0 and for v >> eps^2, but sqrt at 0 has an infinite
  // derivative, which a second-order pass multiplies by the zero gradient of a dead unit: NaN.
  Adam,
};

struct InnerLoopOptions {
  int steps = 1;
  double lr = 0.01;          // the fixed rate, and the initial value of learned ones
  bool second_order = true;  // false: first-order MAML
  // Only parameters whose names start with one of these adapt (ANIL: the head); empty: all adapt.
  std::vector<std::string> adapt_prefixes{};
  LearnedLr learned_lr = LearnedLr::None;
  InnerOptimizer optimizer = InnerOptimizer::Sgd;
  double momentum = 0.9;  // Momentum
  double beta1 = 0.9;     // Adam
  double beta2 = 0.999;   // Adam
  double eps = 1e-8;      // Adam
  // Recompute each step's graph during backward instead of keeping it (see the top of this file).
  // The model, and whatever the loss function refers to, must outlive the backward pass. A
  // recomputed step sees the modes, generator states (Dropout, MultiheadAttention,
  // default_generator()) and inner step of its first run, and leaves BatchNorm statistics as they
  // were. Any other state the forward pass reads must not change before backward, and tensors
  // that require grad reach the loop only through params, the learned rates and the support set:
  // the recomputation checks both and throws an mg::Error naming the step otherwise.
  bool checkpoint = false;
};

bool adapts(const InnerLoopOptions& options, const std::string& name);

// Learned rates for the adapted parameters, initialised to options.lr, requiring grad. Keys are
// the parameter names.
nn::TensorDict make_learned_lrs(const nn::TensorDict& params, const InnerLoopOptions& options);

struct Adaptation {
  nn::TensorDict params;                // after the last step
  std::vector<nn::TensorDict> history;  // after each step (only when asked for)
  // Before each step, detached scalars on the parameters' device: reading them is left to the
  // caller, so that a GPU inner loop never waits for the host.
  TensorList support_losses;
};

// Runs options.steps steps of options.optimizer on L_support from params. Before step s the model
// is told set_inner_step(s) (for per-step BatchNorm statistics).
Adaptation adapt(nn::Module& model, const nn::TensorDict& params, const Tensor& support_x, const Tensor& support_y,
                 const LossFn& loss, const InnerLoopOptions& options, const nn::TensorDict* learned_lrs = nullptr,
                 bool keep_history = false);

}  // namespace mg::meta
