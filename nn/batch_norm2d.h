#pragma once
// BatchNorm2d with the statistics modes meta-learning needs. PyTorch's names: weight and bias
// [C] (when affine), running_mean, running_var and num_batches_tracked (int64) buffers.
//
//   RunningStats  PyTorch's semantics. train(): normalise with the batch's statistics (biased
//                 variance) and update the running ones (unbiased variance); eval(): normalise
//                 with the running statistics. Buffers running_mean, running_var [C] (zeros,
//                 ones) and num_batches_tracked (0-d), exactly PyTorch's state_dict.
//   Transductive  Batch statistics always, in eval() too: each task's query set is normalised
//                 with its own statistics, the setting of the MAML paper's experiments. No
//                 running statistics exist: the state_dict is weight and bias only, as PyTorch's
//                 BatchNorm2d(track_running_stats=False).
//   PerStep       MAML++ (Antoniou et al., 2019): one set of running statistics per inner-loop
//                 step. Buffers running_mean, running_var [num_steps, C] (row s for step s) and
//                 num_batches_tracked [num_steps]; the step is the one last given to
//                 set_inner_step(), which the inner loop calls before each step's forward pass
//                 (0 until then). train(): batch statistics, updating row s; eval(): row s's
//                 running statistics. The affine parameters are shared across steps.
//
// The normalisation (functional::batch_norm2d) is differentiable to any order, so a MAML inner
// loop can differentiate through it; running statistics are updated in
// place under no-grad, from detached values.
//
// Task-batched input [T,N,C,H,W] (per-task weight and bias [T,C], see nn/functional.h): the
// batch statistics are each task's own, over its N, H, W, so every task is normalised as it
// would be on its own. The running statistics stay one set (per step) shared by all tasks: in
// train() each task's statistics update them as a separate batch, in task order (T updates,
// num_batches_tracked += T), and eval() normalises every task with them. Per step, this is the
// sequence of updates a loop over the tasks makes; RunningStats mode's single set sees the same
// updates in another order (all tasks' step s before step s + 1, rather than task by task).
#include <cstdint>
#include <optional>
#include <string_view>

#include "module.h"

namespace mg::nn {

enum class BatchNormMode { RunningStats, Transductive, PerStep };

// "running_stats", "transductive", "per_step".
std::string_view to_string(BatchNormMode mode);

struct BatchNorm2dOptions {
  double eps = 1e-5;
  // nullopt: a cumulative moving average (factor 1 / num_batches_tracked), PyTorch's momentum=None.
  std::optional<double> momentum = 0.1;
  bool affine = true;
  BatchNormMode mode = BatchNormMode::RunningStats;
  int64_t num_steps = 1;  // PerStep only: how many inner steps have their own statistics
};

class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t num_features, double eps = 1e-5, std::optional<double> momentum = 0.1,
                       bool affine = true, BatchNormMode mode = BatchNormMode::RunningStats, int64_t num_steps = 1);
  BatchNorm2d(int64_t num_features, const BatchNorm2dOptions& options);

  std::string type_name() const override { return "BatchNorm2d"; }
  using Module::forward;
  // Reads params["weight"] and params["bias"] when affine; the statistics are the module's own.
  Tensor forward(const Params& params, const Tensor& x) override;
  // PerStep: selects the statistics row; throws unless 0 <= step < num_steps. Other modes
  // ignore the step.
  void set_inner_step(int step) override;
  // Running statistics are deferred under nn::DeferBufferUpdates; PerStep's current step is
  // module state that concurrent tasks would share.
  bool concurrent_forward() const override {
    return options_.mode != BatchNormMode::PerStep && Module::concurrent_forward();
  }

  void reset_parameters();     // weight = 1, bias = 0
  void reset_running_stats();  // means 0, variances 1, counts 0

  int64_t num_features() const { return num_features_; }
  BatchNormMode mode() const { return options_.mode; }
  const BatchNorm2dOptions& options() const { return options_; }
  int inner_step() const { return step_; }  // PerStep: the row in use; 0 in other modes

 private:
  int64_t num_features_;
  BatchNorm2dOptions options_;
  int step_ = 0;
};

}  // namespace mg::nn
