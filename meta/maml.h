#pragma once
// The MAML family's per-task objective: adapt on the support set, evaluate on the query set.
// MAML (second order), first-order MAML, Meta-SGD, ANIL and MAML++'s multi-step loss are all
// this one function with different InnerLoopOptions; its gradient with respect to the initial
// parameters (and learned rates) is the meta-gradient.
#include <vector>

#include "inner_loop.h"
#include "task.h"

namespace mg::meta {

struct MamlOptions {
  InnerLoopOptions inner;
  // MAML++ multi-step loss: weight of the query loss after each inner step (size inner.steps);
  // empty means the final step only (plain MAML).
  std::vector<double> multi_step_weights{};
};

struct TaskLoss {
  Tensor query_loss;            // differentiable with respect to params (and learned rates)
  Tensor query_output;          // the adapted model's output on the query set (detached)
  TensorList support_losses;    // before each inner step (detached scalars)
};

TaskLoss maml_task_loss(nn::Module& model, const nn::TensorDict& params, const Task& task, const LossFn& loss,
                        const MamlOptions& options, const nn::TensorDict* learned_lrs = nullptr);

// MAML++'s annealed multi-step loss weights: early steps start at 1/steps and decay linearly to
// a floor over anneal_iterations, the last step takes the rest (Antoniou et al. 2019).
std::vector<double> multi_step_loss_weights(int steps, int64_t iteration, int64_t anneal_iterations);

}  // namespace mg::meta
