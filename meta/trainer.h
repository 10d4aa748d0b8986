#pragma once
// A meta-training loop for the MAML family, ProtoNets and iMAML on any TaskSampler: meta-batches drawn from the
// sampler's seeded stream, an outer Adam step per meta-iteration, periodic evaluation on held-out
// tasks (mean query loss with a 95% interval), metrics as CSV, a progress line, and checkpoints
// from which training resumes bit for bit (model, optimizer, learned rates, step, stream cursor).
#include <atomic>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "../nn/adam.h"
#include "../nn/module.h"
#include "../nn/tensor_dict.h"
#include "../tensor/device_graph.h"
#include "imaml.h"
#include "inner_loop.h"
#include "maml.h"
#include "task.h"
#include "task_batched.h"
#include "task_parallel.h"

namespace mg::meta {

enum class Algorithm { Maml, FoMaml, MetaSgd, Anil, Reptile, ProtoNet, IMaml };
enum class LossKind { Mse, CrossEntropy };
enum class Batching { Auto, Looped, TaskBatched };
enum class TaskThreads { Auto, On, Off };

const char* algorithm_name(Algorithm algorithm);
// The inverse of algorithm_name; throws mg::Error listing the known names.
Algorithm algorithm_from_name(std::string_view name);
const char* loss_kind_name(LossKind kind);

struct TrainerConfig {
  Algorithm algorithm = Algorithm::Maml;
  int inner_steps = 1;
  double inner_lr = 0.01;
  double outer_lr = 1e-3;
  int64_t meta_batch = 4;
  int64_t iterations = 1000;   // total, counted from the start of training (also across resumes)
  int64_t log_interval = 100;  // 0: no progress lines
  int64_t eval_interval = 0;   // 0: evaluate (and write last.safetensors) only at the end
  int64_t eval_tasks = 100;
  uint64_t seed = 0;  // recorded in the checkpoint; the task stream's seed belongs to the sampler
  LossKind loss = LossKind::Mse;
  std::string anil_head_prefix = "head.";  // the parameters ANIL adapts
  ImamlOptions imaml{};                    // iMAML's lambda and CG steps (its inner steps and lr are the above)
  // How a MAML-family meta-batch runs: as a loop over its tasks, or as one task-batched
  // computation (per-task weights [T, ...], batched GEMMs; meta/task_batched.h), with the same
  // meta-gradient up to rounding and all tasks' graphs alive at once. Auto batches where it was
  // measured to pay (bench/RESULTS.md): models without convolutions, unless the inner loop is
  // checkpointed, the loop would run its tasks on threads (task_threads below), or the model is
  // on the CPU with 16K parameters or more (meta::tasks_on_threads_pay), where batching gained
  // nothing and holds every task's graph at once; the other algorithms always loop.
  Batching batching = Batching::Looped;
  // Whether a looped meta-batch (and evaluation) runs its tasks on OpenMP threads, one task per
  // thread (meta/task_parallel.h): the same result to the bit, with as many task graphs alive as
  // threads. Auto: where the model allows it and is large enough for it to pay
  // (meta::tasks_on_threads_pay); On: wherever the model allows it; Off: tasks in turn, each op
  // using every thread.
  TaskThreads task_threads = TaskThreads::Auto;
  // Record the meta-step's device work once as a graph and replay it every iteration
  // (tensor/device_graph.h): a CUDA model's task-batched MAML-family step, whose thousands of
  // small kernels otherwise cost more to launch than to run. The first iteration runs eagerly
  // (it warms the allocator's cache), the second is captured; from then on each iteration copies
  // its tasks into the graph's input tensors, replays, and takes the outer Adam step. Every
  // meta-batch must have the first one's shapes, and the step must not draw random numbers
  // (dropout). Not with MAML++'s annealed multi-step loss, whose weights change every iteration.
  bool device_graph = false;
  InnerOptimizer inner_optimizer = InnerOptimizer::Sgd;  // differentiable SGD, momentum or Adam
  // Recompute inner steps during backward instead of storing them: memory flat in inner steps.
  bool checkpoint_inner = false;
  // MAML++ (Antoniou et al. 2019): learned per-tensor, per-step inner learning rates, and the
  // multi-step loss annealed to the last step's over this many iterations (0: last step only).
  bool per_step_lrs = false;
  int64_t multi_step_anneal = 0;
  std::string output_dir{};  // empty: no CSV and no checkpoints
  // Written into every checkpoint beside the trainer's own entries (the program stores how to
  // rebuild the model and tasks there).
  std::map<std::string, std::string> metadata{};
  // Checked once per iteration: when it turns true, train() writes last.safetensors and returns.
  const std::atomic<bool>* stop_flag = nullptr;
};

struct EvalResult {
  double loss = 0.0;       // mean post-adaptation query loss over the evaluation tasks
  double loss_ci95 = 0.0;  // 1.96 * sample std / sqrt(n)
  double accuracy = -1.0;  // mean query accuracy for classification; -1 for regression
  double accuracy_ci95 = 0.0;
  int64_t tasks = 0;
};

class Trainer {
 public:
  // eval_sampler: held-out tasks, its stream's tasks 0 .. eval_tasks-1; null means no evaluation
  // (no best checkpoint). The model and samplers must outlive the trainer.
  Trainer(nn::Module& model, TaskSampler& train_sampler, const TaskSampler* eval_sampler, TrainerConfig config,
          std::ostream* log = nullptr);

  // One meta-iteration; returns the mean query loss (or, for Reptile, the mean post-adaptation
  // support loss) over the meta-batch.
  double step();
  // Runs until config.iterations (or the stop flag), evaluating, logging and checkpointing as
  // configured. Returns false when stopped early.
  bool train();
  // Held-out tasks 0 .. tasks-1 of the evaluation sampler, each adapted from the current
  // parameters with inner_steps steps (-1: the configured number) of the trained algorithm's
  // adaptation (none for ProtoNets). The model's buffers (BatchNorm running statistics) are the
  // same afterwards.
  EvalResult evaluate(int64_t tasks = -1, int inner_steps = -1);
  // The same on any sampler's stream.
  EvalResult evaluate_on(const TaskSampler& sampler, int64_t tasks, int inner_steps = -1);

  // Checkpoint files. save() writes one; resume() restores model, optimizer, learned rates, step
  // and sampler cursor, after checking that the checkpoint was written for a model with the same
  // parameter names and shapes.
  void save(const std::string& path) const;
  void resume(const std::string& path);
  // Only the model's weights and learned rates (for evaluation); returns the checkpoint's step.
  int64_t load_weights(const std::string& path);

  int64_t iteration() const { return iteration_; }
  const TrainerConfig& config() const { return config_; }
  // Whether meta-batches run task-batched (config.batching resolved for this model).
  bool task_batched() const { return task_batched_; }
  // How many threads the tasks of a looped meta-batch of this size run on (1: in turn).
  int task_threads(int64_t tasks) const;
  const nn::TensorDict& learned_lrs() const { return learned_lrs_; }
  // Where the model lives (when it was given to the trainer); tasks are moved there.
  Device device() const { return device_; }
  // Whether the meta-step is now replayed from a recorded device graph.
  bool replaying_graph() const { return graph_ != nullptr; }
  nn::Optimizer& optimizer() { return *optimizer_; }
  double best_eval_loss() const { return best_eval_loss_; }
  const EvalResult& best_eval() const { return best_eval_; }
  double train_seconds() const { return train_seconds_; }
  // "name[shape];..." over the model's parameters.
  static std::string fingerprint(const nn::Module& model);

 private:
  Tensor task_loss(const Tensor& output, const Tensor& target) const;
  ImamlOptions imaml_options() const;
  LossFn loss_fn() const;  // task_loss as the inner loop takes it
  double maml_family_step(const TaskBatch& batch, const nn::TensorDict& params, double scale);
  MamlOptions maml_options() const;
  BatchedLossFn batched_loss_fn() const;
  // One meta-iteration through the recorded graph (config.device_graph).
  double graph_step(const TaskBatch& batch);
  TaskBatch on_device(const TaskBatch& batch) const;
  double reptile_step(const TaskBatch& batch, const nn::TensorDict& params, double scale);
  double protonet_step(const TaskBatch& batch, const nn::TensorDict& params, double scale);
  double imaml_step(const TaskBatch& batch, const nn::TensorDict& params, double scale);
  TensorList outer_leaves(const nn::TensorDict& params) const;  // what the outer optimizer updates
  void drop_csv_rows_after(int64_t iteration) const;
  void write_csv_row(double train_loss, const EvalResult* eval, double seconds);

  nn::Module& model_;
  TaskSampler& train_sampler_;
  const TaskSampler* eval_sampler_;
  TrainerConfig config_;
  std::ostream* log_;
  InnerLoopOptions inner_;
  nn::TensorDict learned_lrs_;
  std::unique_ptr<nn::Adam> optimizer_;
  int64_t iteration_ = 0;
  double best_eval_loss_;
  EvalResult best_eval_{};
  double train_seconds_ = 0.0;
  bool csv_header_written_ = false;
  bool task_batched_ = false;
  Device device_;
  // config.device_graph: the recorded step, its input tensors and its summed task losses.
  std::unique_ptr<DeviceGraph> graph_;
  TaskBatch graph_batch_;
  Tensor graph_loss_;
  bool graph_warmed_ = false;
};

}  // namespace mg::meta
