#pragma once
// The tasks of a looped meta-batch on OpenMP threads, one task per thread at a time. Inside a
// task every kernel then runs on that task's thread (kernels do not nest parallel regions), so
// small per-task ops no longer pay for waking threads, and a meta-batch keeps every core busy
// however small its tasks are. The cost is memory: as many task graphs are alive as threads run.
//
// Results do not depend on the number of threads: per-task gradients and buffer updates are
// combined in task order after all tasks ran, in the same arithmetic as a loop on one thread.
#include <cstdint>
#include <functional>
#include <vector>

#include "../autograd/node.h"
#include "../nn/module.h"

namespace mg::meta {

// How many threads the tasks of a looped meta-batch can get: min(num_threads(), tasks) when the
// model's forward may run concurrently (nn::Module::concurrent_forward), else 1.
int task_threads(const nn::Module& model, int64_t tasks);

// Whether putting tasks on threads is expected to pay for this model: it has at least
// kThreadedTaskMinParameters parameters. Below that a task's ops take microseconds each, and
// threads recording at once contend for the allocator and the shared parameters' reference
// counts more than they gain (bench/RESULTS.md: W-sin's 1.7K-parameter MLP ran 0.73x as fast on
// 2 threads as in turn; W-tf's transformer 1.67x and W-omni's conv4 1.15x as fast).
inline constexpr int64_t kThreadedTaskMinParameters = 16384;
bool tasks_on_threads_pay(const nn::Module& model);

// Runs task(t) for t = 0 .. tasks-1 on up to `threads` OpenMP threads (in turn on the calling
// thread when threads <= 1). Each task sees the caller's grad mode and anomaly mode. Buffer
// updates of a training forward (BatchNorm's running statistics) are deferred per task and
// applied in task order once all tasks ran. If tasks throw, every task still finishes, no
// buffer is updated, and the exception of the lowest t is rethrown.
void for_each_task(int64_t tasks, int threads, const std::function<void(int64_t)>& task);

// For each task t, adds d(task_loss(t) * scale) / d(leaf) into every leaf's .grad(), in task
// order: the same sums, to the bit, as (task_loss(t) * scale).backward() task after task on
// one thread. The leaves are shared by the tasks (a meta-batch's parameters and learned rates);
// tasks run as for_each_task runs them. Returns each task's loss value.
std::vector<double> accumulate_task_gradients(const TensorList& leaves, int64_t tasks, int threads, double scale,
                                              const std::function<Tensor(int64_t)>& task_loss);

}  // namespace mg::meta
