#include "batch_norm2d.h"

#include "../autograd/grad_mode.h"
#include "../tensor/creation.h"
#include "deferred_buffer_updates.h"
#include "functional_conv.h"
#include "init.h"

namespace mg::nn {

std::string_view to_string(BatchNormMode mode) {
  switch (mode) {
    case BatchNormMode::RunningStats:
      return "running_stats";
    case BatchNormMode::Transductive:
      return "transductive";
    case BatchNormMode::PerStep:
      return "per_step";
  }
  return "unknown";
}

BatchNorm2d::BatchNorm2d(int64_t num_features, double eps, std::optional<double> momentum, bool affine,
                         BatchNormMode mode, int64_t num_steps)
    : BatchNorm2d(num_features, BatchNorm2dOptions{eps, momentum, affine, mode, num_steps}) {}

BatchNorm2d::BatchNorm2d(int64_t num_features, const BatchNorm2dOptions& options)
    : num_features_(num_features), options_(options) {
  MG_CHECK(num_features > 0, "BatchNorm2d: num_features must be positive, got ", num_features);
  MG_CHECK(options.eps >= 0.0, "BatchNorm2d: eps must be >= 0, got ", options.eps);
  MG_CHECK(!options.momentum || (*options.momentum >= 0.0 && *options.momentum <= 1.0),
           "BatchNorm2d: momentum must be in [0, 1], got ", options.momentum.value_or(0.0));
  MG_CHECK(options.mode == BatchNormMode::PerStep ? options.num_steps >= 1 : options.num_steps == 1,
           "BatchNorm2d: num_steps is ", options.num_steps, " in mode ", nn::to_string(options.mode),
           "; it must be >= 1 in per_step mode and 1 otherwise");
  if (options.affine) {
    register_parameter("weight", ones({num_features}));
    register_parameter("bias", zeros({num_features}));
  }
  switch (options.mode) {
    case BatchNormMode::RunningStats:
      register_buffer("running_mean", zeros({num_features}));
      register_buffer("running_var", ones({num_features}));
      register_buffer("num_batches_tracked", zeros({}, kInt64));
      break;
    case BatchNormMode::PerStep:
      register_buffer("running_mean", zeros({options.num_steps, num_features}));
      register_buffer("running_var", ones({options.num_steps, num_features}));
      register_buffer("num_batches_tracked", zeros({options.num_steps}, kInt64));
      break;
    case BatchNormMode::Transductive:
      break;
  }
}

void BatchNorm2d::reset_parameters() {
  if (Tensor w = param("weight"); w.defined()) init::ones_(w);
  if (Tensor b = param("bias"); b.defined()) init::zeros_(b);
}

void BatchNorm2d::reset_running_stats() {
  if (options_.mode == BatchNormMode::Transductive) return;
  NoGradGuard no_grad;
  buffer("running_mean").fill_(0.0);
  buffer("running_var").fill_(1.0);
  buffer("num_batches_tracked").fill_(0.0);
}

void BatchNorm2d::set_inner_step(int step) {
  // Other modes leave the module untouched, so that tasks running on several threads at once
  // may all call this.
  if (options_.mode != BatchNormMode::PerStep) return;
  MG_CHECK(step >= 0 && step < options_.num_steps, "BatchNorm2d: inner step ", step,
           " is out of range for per_step statistics over ", options_.num_steps, " steps (0..", options_.num_steps - 1,
           ")");
  step_ = step;
  Module::set_inner_step(step);
}

Tensor BatchNorm2d::forward(const Params& params, const Tensor& x) {
  MG_CHECK(x.defined(), "BatchNorm2d: input is an undefined tensor");
  MG_CHECK(x.dim() == 4 || x.dim() == 5,
           "BatchNorm2d: expected a 4-D [N,C,H,W] input (or task-batched [T,N,C,H,W]), got ", describe(x));
  MG_CHECK(x.size(-3) == num_features_, "BatchNorm2d: input ", describe(x), " has ", x.size(-3),
           " channels but the layer has ", num_features_, " features");
  const Tensor weight = options_.affine ? params["weight"] : Tensor();
  const Tensor bias = options_.affine ? params["bias"] : Tensor();
  if (options_.mode == BatchNormMode::Transductive)
    return functional::batch_norm2d(x, Tensor(), Tensor(), weight, bias, /*training=*/true, 0.0, options_.eps);

  Tensor running_mean = buffer("running_mean");
  Tensor running_var = buffer("running_var");
  Tensor count = buffer("num_batches_tracked");
  if (options_.mode == BatchNormMode::PerStep) {
    // Views of row step_: the in-place update below writes into the buffers themselves.
    NoGradGuard no_grad;
    running_mean = running_mean.select(0, step_);
    running_var = running_var.select(0, step_);
    count = count.select(0, step_);
  }
  // PyTorch's momentum=None: the average over every batch so far, this one included.
  auto factor = [&] {
    return !is_training() ? 0.0 : options_.momentum ? *options_.momentum : 1.0 / (count.item<double>() + 1.0);
  };
  if (x.dim() == 5 && is_training()) {
    // Each task's statistics update the running ones as a separate batch, in task order: what a
    // loop over the tasks does for the same step.
    Tensor y = functional::batch_norm2d(x, Tensor(), Tensor(), weight, bias, /*training=*/true, 0.0, options_.eps);
    for (int64_t t = 0; t < x.size(0); ++t) {
      functional::update_running_stats(x.select(0, t), running_mean, running_var, factor());
      NoGradGuard no_grad;
      count.add_(1.0);
    }
    return y;
  }
  if (BufferUpdateQueue* queue = deferred_buffer_updates(); queue != nullptr && is_training()) {
    // Momentum 1 leaves exactly the batch's mean and unbiased variance in the scratch statistics,
    // so the update applied later is the same arithmetic as an immediate one; the factor is read
    // from the count then, after the updates of the tasks before this one.
    const Tensor batch_mean = zeros_like(running_mean), batch_var = ones_like(running_var);
    Tensor y = functional::batch_norm2d(x, batch_mean, batch_var, weight, bias, true, 1.0, options_.eps);
    queue->push([running_mean, running_var, count, batch_mean, batch_var, momentum = options_.momentum] {
      const double f = momentum ? *momentum : 1.0 / (count.item<double>() + 1.0);
      functional::blend_running_stats(running_mean, running_var, batch_mean, batch_var, f);
      NoGradGuard no_grad;
      Tensor(count).add_(1.0);
    });
    return y;
  }
  Tensor y =
      functional::batch_norm2d(x, running_mean, running_var, weight, bias, is_training(), factor(), options_.eps);
  if (is_training()) {  // only once the batch has been accepted
    NoGradGuard no_grad;
    count.add_(1.0);
  }
  return y;
}

}  // namespace mg::nn
