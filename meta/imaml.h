#pragma once
// Implicit MAML (Rajeswaran et al. 2019): adapt by minimising L_support(phi) + lambda/2 |phi - theta|^2,
// then take the meta-gradient from the implicit function theorem,
//   d L_query(phi*) / d theta = (I + H_support(phi*) / lambda)^-1 grad L_query(phi*),
// solving the linear system by conjugate gradient on Hessian-vector products (double backward).
// Memory does not grow with the number of inner steps.
#include "inner_loop.h"
#include "task.h"

namespace mg::meta {

struct ImamlOptions {
  int inner_steps = 10;
  double inner_lr = 0.01;
  double lambda = 1.0;  // strength of the proximal term
  int cg_steps = 5;
};

struct ImamlResult {
  nn::TensorDict meta_gradient;  // one entry per parameter, no graph
  double query_loss = 0.0;
  Tensor query_output;           // detached
  double cg_residual = 0.0;      // |r| after the last CG step, relative to |grad L_query|
};

// The inner problem alone: options.inner_steps steps of gradient descent on
// L_support(phi) + lambda/2 |phi - theta|^2 from phi = theta, first order (no graph).
nn::TensorDict imaml_adapt(nn::Module& model, const nn::TensorDict& params, const Task& task, const LossFn& loss,
                           const ImamlOptions& options);

ImamlResult imaml_meta_gradient(nn::Module& model, const nn::TensorDict& params, const Task& task, const LossFn& loss,
                                const ImamlOptions& options);

}  // namespace mg::meta
