#include "task.h"

#include <utility>

#include "../autograd/ops.h"

namespace mg::meta {

namespace {

Tensor moved(const Tensor& t, Device device) { return t.defined() ? t.to(device) : t; }

void check_same(const char* field, const Tensor& first, const Tensor& other, std::size_t index) {
  MG_CHECK(first.defined() == other.defined(), "stack_tasks: ", field, " is defined in task 0 but not in task ", index,
           " (or the reverse)");
  if (!first.defined()) return;
  MG_CHECK(first.shape() == other.shape() && first.dtype() == other.dtype() && first.device() == other.device(),
           "stack_tasks: ", field, " of task ", index, " is ", describe(other), " but ", field, " of task 0 is ",
           describe(first), "; a meta-batch needs tasks of one shape");
}

Tensor stack_field(const std::vector<Task>& tasks, Tensor Task::*field) {
  if (!(tasks[0].*field).defined()) return Tensor();
  std::vector<Tensor> parts;
  parts.reserve(tasks.size());
  for (const Task& t : tasks) parts.push_back(t.*field);
  return stack(parts, 0);
}

}  // namespace

Task Task::to(Device device) const {
  return Task{moved(support_x, device), moved(support_y, device), moved(query_x, device), moved(query_y, device),
              class_names};
}

Task TaskBatch::task(int64_t i) const {
  const int64_t n = size();
  MG_CHECK(i >= 0 && i < n, "TaskBatch::task: index ", i, " is out of range for a batch of ", n, " tasks");
  auto pick = [i](const Tensor& t) { return t.defined() ? t.select(0, i) : t; };
  Task out{pick(support_x), pick(support_y), pick(query_x), pick(query_y), {}};
  if (static_cast<std::size_t>(i) < class_names.size()) out.class_names = class_names[static_cast<std::size_t>(i)];
  return out;
}

TaskBatch TaskBatch::to(Device device) const {
  return TaskBatch{moved(support_x, device), moved(support_y, device), moved(query_x, device),
                   moved(query_y, device), class_names};
}

TaskBatch stack_tasks(const std::vector<Task>& tasks) {
  MG_CHECK(!tasks.empty(), "stack_tasks: expects at least one task");
  const Task& first = tasks[0];
  MG_CHECK(first.support_x.defined(), "stack_tasks: task 0 has no support_x");
  for (std::size_t i = 1; i < tasks.size(); ++i) {
    check_same("support_x", first.support_x, tasks[i].support_x, i);
    check_same("support_y", first.support_y, tasks[i].support_y, i);
    check_same("query_x", first.query_x, tasks[i].query_x, i);
    check_same("query_y", first.query_y, tasks[i].query_y, i);
  }
  TaskBatch out;
  out.support_x = stack_field(tasks, &Task::support_x);
  out.support_y = stack_field(tasks, &Task::support_y);
  out.query_x = stack_field(tasks, &Task::query_x);
  out.query_y = stack_field(tasks, &Task::query_y);
  out.class_names.reserve(tasks.size());
  for (const Task& t : tasks) out.class_names.push_back(t.class_names);
  return out;
}

Task TaskSampler::task(uint64_t index) const {
  MG_CHECK(index < kCountersPerTask, "TaskSampler::task: index ", index, " is beyond the 2^32 tasks of a stream");
  Generator gen(seed_);
  gen.set_state(seed_, index * kCountersPerTask);
  return sample(gen);
}

TaskBatch TaskSampler::batch(uint64_t first, int64_t count) const {
  MG_CHECK(count > 0, "TaskSampler::batch: count must be positive, got ", count);
  std::vector<Task> tasks;
  tasks.reserve(static_cast<std::size_t>(count));
  for (int64_t i = 0; i < count; ++i) tasks.push_back(task(first + static_cast<uint64_t>(i)));
  return stack_tasks(tasks);
}

Task TaskSampler::next() {
  Task t = task(cursor_);
  ++cursor_;
  return t;
}

TaskBatch TaskSampler::next_batch(int64_t count) {
  TaskBatch b = batch(cursor_, count);
  cursor_ += static_cast<uint64_t>(count);
  return b;
}

TaskBatch TaskSampler::sample_batch(Generator& gen, int64_t count) const {
  MG_CHECK(count > 0, "TaskSampler::sample_batch: count must be positive, got ", count);
  std::vector<Task> tasks;
  tasks.reserve(static_cast<std::size_t>(count));
  for (int64_t i = 0; i < count; ++i) tasks.push_back(sample(gen));
  return stack_tasks(tasks);
}

}  // namespace mg::meta
