#pragma once
// Buffers that a training-mode forward writes (BatchNorm's running statistics) are shared by
// every task of a meta-batch. When the tasks run on several threads at once, such layers put
// their updates in the calling thread's queue instead of writing; the caller applies each task's
// queue in task order once all have run, which leaves the buffers exactly as a loop over the
// tasks would.
#include <functional>
#include <vector>

namespace mg::nn {

class BufferUpdateQueue {
 public:
  void push(std::function<void()> update) { updates_.push_back(std::move(update)); }
  // Runs the queued updates in the order they were queued, then empties the queue.
  void apply();
  void clear() { updates_.clear(); }
  bool empty() const { return updates_.empty(); }

 private:
  std::vector<std::function<void()>> updates_;
};

// The calling thread's queue while a DeferBufferUpdates is alive on it; null otherwise (layers
// then update their buffers at once).
BufferUpdateQueue* deferred_buffer_updates();

class DeferBufferUpdates {
 public:
  explicit DeferBufferUpdates(BufferUpdateQueue& queue);
  ~DeferBufferUpdates();
  DeferBufferUpdates(const DeferBufferUpdates&) = delete;
  DeferBufferUpdates& operator=(const DeferBufferUpdates&) = delete;

 private:
  BufferUpdateQueue* previous_;
};

}  // namespace mg::nn
