#pragma once
// A few-shot task (a support set to adapt on, a query set to evaluate the adapted model on), a
// meta-batch of tasks stacked along a leading task dimension, and the interface every task sampler
// (sinusoid, Omniglot, words) implements.
#include <cstdint>
#include <string>
#include <vector>

#include "../tensor/creation.h"
#include "../tensor/tensor.h"

namespace mg::meta {

struct Task {
  Tensor support_x;
  Tensor support_y;
  Tensor query_x;
  Tensor query_y;
  // For classification: class_names[label] names the class behind each label of this task
  // (e.g. "Greek/character07/rot90", "bg"), for evaluation reports and debugging. Empty for
  // regression.
  std::vector<std::string> class_names;

  Task to(Device device) const;
};

// The same fields with a leading task dimension: support_x [T, ...] and so on, as the batched
// meta-step consumes them (per-task weights, batched GEMMs).
struct TaskBatch {
  Tensor support_x;
  Tensor support_y;
  Tensor query_x;
  Tensor query_y;
  std::vector<std::vector<std::string>> class_names;  // one list per task

  int64_t size() const { return support_x.defined() ? support_x.size(0) : 0; }
  // Task i as views into the batch (no copy).
  Task task(int64_t i) const;
  TaskBatch to(Device device) const;
};

// Stacks tasks of identical shapes; throws mg::Error naming the first field and task that differ.
TaskBatch stack_tasks(const std::vector<Task>& tasks);

// A sampler defines one thing, sample(gen): a task drawn with (and advancing) gen. On top of it,
// every sampler offers a seeded stream: task(i) is a pure function of (seed, i), so held-out
// evaluation tasks, resumed runs and tasks sharded over ranks are the same whoever draws them
// and in whatever order.
class TaskSampler {
 public:
  // Each task of the seeded stream owns 2^32 Philox counters, far more than any task draws.
  static constexpr uint64_t kCountersPerTask = uint64_t{1} << 32;

  explicit TaskSampler(uint64_t seed = 0) : seed_(seed) {}
  virtual ~TaskSampler() = default;

  virtual Task sample(Generator& gen) const = 0;

  Task task(uint64_t index) const;
  // Tasks first, first+1, ..., first+count-1 of the stream, stacked.
  TaskBatch batch(uint64_t first, int64_t count) const;
  // The next task(s) of the stream; the cursor is what a checkpoint stores to resume exactly.
  Task next();
  TaskBatch next_batch(int64_t count);
  // count tasks drawn with gen, stacked.
  TaskBatch sample_batch(Generator& gen, int64_t count) const;

  uint64_t seed() const { return seed_; }
  uint64_t cursor() const { return cursor_; }
  void set_cursor(uint64_t cursor) { cursor_ = cursor; }

 protected:
  TaskSampler(const TaskSampler&) = default;
  TaskSampler& operator=(const TaskSampler&) = default;

 private:
  uint64_t seed_ = 0;
  uint64_t cursor_ = 0;
};

}  // namespace mg::meta
