#include "task_parallel.h"

#include <algorithm>
#include <exception>

#include "../autograd/grad.h"
#include "../autograd/grad_mode.h"
#include "../autograd/ops.h"
#include "../autograd/shared_leaves.h"
#include "../nn/deferred_buffer_updates.h"
#include "../tensor/threads.h"

namespace mg::meta {
namespace {

// A thread of the OpenMP team starts with its own modes; a task takes the caller's.
class CallerModes {
 public:
  CallerModes(bool grad, bool anomaly) : grad_(grad), anomaly_(AnomalyMode::is_enabled()) {
    AnomalyMode::set_enabled(anomaly);
  }
  ~CallerModes() { AnomalyMode::set_enabled(anomaly_); }
  CallerModes(const CallerModes&) = delete;
  CallerModes& operator=(const CallerModes&) = delete;

 private:
  GradModeGuard grad_;
  bool anomaly_;
};

}  // namespace

int task_threads(const nn::Module& model, int64_t tasks) {
  if (tasks <= 1 || !model.concurrent_forward()) return 1;
  return static_cast<int>(std::min<int64_t>(num_threads(), tasks));
}

bool tasks_on_threads_pay(const nn::Module& model) {
  int64_t parameters = 0;
  for (const auto& [name, p] : model.named_parameters()) parameters += p.numel();
  return parameters >= kThreadedTaskMinParameters;
}

void for_each_task(int64_t tasks, int threads, const std::function<void(int64_t)>& task) {
  if (threads <= 1 || tasks <= 1) {
    for (int64_t t = 0; t < tasks; ++t) task(t);
    return;
  }
  std::vector<nn::BufferUpdateQueue> updates(static_cast<std::size_t>(tasks));
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(tasks));
  const bool grad_mode = GradMode::is_enabled(), anomaly_mode = AnomalyMode::is_enabled();
  // Dynamic, one task at a time: tasks of one meta-batch may differ in cost (ragged episodes).
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t t = 0; t < tasks; ++t) {
    const auto i = static_cast<std::size_t>(t);
    try {
      const CallerModes modes(grad_mode, anomaly_mode);
      nn::DeferBufferUpdates defer(updates[i]);
      task(t);
    } catch (...) {
      errors[i] = std::current_exception();
    }
  }
  for (const std::exception_ptr& error : errors)
    if (error) std::rethrow_exception(error);
  for (nn::BufferUpdateQueue& queue : updates) queue.apply();
}

std::vector<double> accumulate_task_gradients(const TensorList& leaves, int64_t tasks, int threads, double scale,
                                              const std::function<Tensor(int64_t)>& task_loss) {
  std::vector<double> losses(static_cast<std::size_t>(tasks));
  if (threads <= 1 || tasks <= 1) {
    // Backward per task, so that each task's graph is freed before the next one is built.
    for (int64_t t = 0; t < tasks; ++t) {
      const Tensor loss = task_loss(t);
      losses[static_cast<std::size_t>(t)] = loss.item();
      (loss * scale).backward();
    }
    return losses;
  }
  std::vector<TensorList> grads(static_cast<std::size_t>(tasks));
  {
    const SharedLeaves shared(leaves);
    for_each_task(tasks, threads, [&](int64_t t) {
      const auto i = static_cast<std::size_t>(t);
      const Tensor loss = task_loss(t);
      losses[i] = loss.item();
      grads[i] = grad({loss * scale}, leaves, {}, {.allow_unused = true});
    });
  }
  // What each backward() would have added, in the same order and arithmetic.
  NoGradGuard no_grad;
  for (std::size_t k = 0; k < leaves.size(); ++k) {
    Tensor sum = leaves[k].grad();
    for (const TensorList& task_grads : grads) {
      const Tensor& g = task_grads[k];
      if (!g.defined()) continue;
      sum = sum.defined() ? sum + g : g.clone();
    }
    if (sum.defined()) leaves[k].set_grad(sum);
  }
  return losses;
}

}  // namespace mg::meta
