#pragma once
// Reptile (Nichol et al. 2018): adapt with plain SGD, then move the initialisation towards the
// adapted weights. The "gradient" handed to the outer optimizer is theta - phi, so an outer SGD
// step with rate epsilon is theta <- theta + epsilon (phi - theta).
#include "inner_loop.h"
#include "task.h"

namespace mg::meta {

// theta - phi for each adapted parameter (no graph: Reptile is first order by construction).
nn::TensorDict reptile_direction(nn::Module& model, const nn::TensorDict& params, const Task& task, const LossFn& loss,
                                 const InnerLoopOptions& inner);

}  // namespace mg::meta
