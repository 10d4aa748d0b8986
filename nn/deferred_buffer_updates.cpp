#include "deferred_buffer_updates.h"

namespace mg::nn {
namespace {

thread_local BufferUpdateQueue* current_queue = nullptr;

}  // namespace

void BufferUpdateQueue::apply() {
  std::vector<std::function<void()>> updates = std::move(updates_);
  updates_.clear();
  for (auto& update : updates) update();
}

BufferUpdateQueue* deferred_buffer_updates() { return current_queue; }

DeferBufferUpdates::DeferBufferUpdates(BufferUpdateQueue& queue) : previous_(current_queue) { current_queue = &queue; }

DeferBufferUpdates::~DeferBufferUpdates() { current_queue = previous_; }

}  // namespace mg::nn
