#include "node.h"

#include <atomic>

#include "../tensor/kernels.h"
#include "grad_mode.h"
#include "ops.h"
#include "../tensor/small_object_pool.h"

namespace mg {
namespace {

std::atomic<uint64_t> next_sequence_nr{0};

// Dropping the last handle to a long tape would otherwise recurse once per node and can
// overflow the stack (an inner loop of thousands of steps); nodes released while another is
// being destroyed are parked here and destroyed by the outermost destructor, iteratively.
thread_local std::vector<std::shared_ptr<Node>>* pending_release = nullptr;

void park(std::shared_ptr<Node>&& node) {
  if (pending_release && node && node.use_count() == 1) pending_release->push_back(std::move(node));
}

}  // namespace

void SavedTensor::release_history() {
  if (data_.defined() && data_.impl_ptr().use_count() == 1) {
    auto& meta = data_.impl().autograd;
    if (meta && meta.use_count() == 1) park(std::move(meta->grad_fn));
  }
  data_ = Tensor();
}

SavedTensor::SavedTensor(const Tensor& t, bool is_output) : is_output_(is_output) {
  if (!t.defined()) return;
  saved_version_ = t.version();
  if (is_output) {
    auto impl = std::allocate_shared<TensorImpl>(PoolAllocator<TensorImpl>(), t.impl());
    impl->autograd.reset();
    data_ = Tensor(std::move(impl));
  } else {
    data_ = t;
  }
}

Tensor SavedTensor::unpack(const std::shared_ptr<Node>& owner, std::string_view op) const {
  if (!data_.defined()) return data_;
  MG_CHECK(data_.version() == saved_version_, "backward of ", op, ": a tensor saved for backward (",
           describe(data_), ") was modified in place after it was saved (version ", data_.version(),
           ", saved at version ", saved_version_, "); use an out-of-place op or clone() it first");
  if (!is_output_) return data_;
  auto impl = std::allocate_shared<TensorImpl>(PoolAllocator<TensorImpl>(), data_.impl());
  impl->autograd = std::allocate_shared<AutogradMeta>(PoolAllocator<AutogradMeta>());
  impl->autograd->requires_grad = true;
  impl->autograd->grad_fn = owner;
  return Tensor(std::move(impl));
}

// Sets up the parking list if none is active, and on leaving the outermost scope destroys
// everything parked, one node at a time.
class ReleaseScope {
 public:
// g++ 13 warns that the thread-local pointer outlives the scope object; the destructor clears it.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
  ReleaseScope() : outermost_(pending_release == nullptr) {
    if (outermost_) pending_release = &parked_;
  }
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic pop
#endif
  ~ReleaseScope() {
    if (!outermost_) return;
    while (!parked_.empty()) {
      std::shared_ptr<Node> node = std::move(parked_.back());
      parked_.pop_back();
      node.reset();  // may park more nodes
    }
    pending_release = nullptr;
  }
  ReleaseScope(const ReleaseScope&) = delete;
  ReleaseScope& operator=(const ReleaseScope&) = delete;

 private:
  bool outermost_;
  std::vector<std::shared_ptr<Node>> parked_;
};

Node::Node(std::string name) : name_(std::move(name)), sequence_nr_(next_sequence_nr++) {}

Node::~Node() {
  ReleaseScope scope;
  for (auto& child : next) park(std::move(child));
}

FunctionNode::FunctionNode(OpId op, BackwardFn backward)
    : Node(std::string(op_name(op))), op_(op), backward_(std::move(backward)) {}

FunctionNode::~FunctionNode() { release_saved(); }

void FunctionNode::save(TensorSpan tensors, const Tensor& output) {
  saved_.reserve(tensors.size());
  for (const Tensor& t : tensors) saved_.emplace_back(t, t.defined() && t.same(output));
}

TensorList FunctionNode::apply(const Tensor& grad) {
  MG_CHECK(!released_, "backward of ", name(),
           ": the saved tensors were already freed by an earlier backward pass; pass retain_graph = true to the "
           "first call to run backward through the same graph twice");
  auto self = shared_from_this();
  TensorList saved;
  saved.reserve(saved_.size());
  for (const SavedTensor& s : saved_) saved.push_back(s.unpack(self, name()));
  std::vector<bool> needs(next.size());
  for (std::size_t i = 0; i < next.size(); ++i) needs[i] = next[i] != nullptr;
  return backward_(BackwardArgs{grad, saved, needs});
}

void FunctionNode::release_saved() {
  ReleaseScope scope;
  for (auto& s : saved_) s.release_history();
  saved_.clear();
  released_ = true;
}

AccumulateGrad::AccumulateGrad(std::shared_ptr<TensorImpl> leaf)
    : Node("accumulate_grad"), leaf_(std::move(leaf)) {
  output_shape = leaf_->shape;
  output_dtype = leaf_->dtype;
  output_device = leaf_->storage->device();
}

TensorList AccumulateGrad::apply(const Tensor& grad) { return {grad}; }

void AccumulateGrad::accumulate(const Tensor& grad, bool create_graph) {
  auto& meta = *leaf_->autograd;
  Tensor incoming = create_graph ? grad : grad.detach();
  if (!meta.grad.defined()) {
    // A fresh tensor, so that later in-place changes to .grad never touch a caller's tensor.
    meta.grad = create_graph ? incoming : kernels::clone(incoming);
  } else {
    GradModeGuard mode(create_graph);
    meta.grad = meta.grad + incoming;
  }
}

std::shared_ptr<Node> gradient_edge(const Tensor& t) {
  auto& meta = t.impl().autograd;
  if (!meta || !meta->requires_grad) return nullptr;
  if (meta->grad_fn) return meta->grad_fn;
  std::weak_ptr<AccumulateGrad> seen = meta->accumulator.load(std::memory_order_acquire);
  if (auto existing = seen.lock()) return existing;
  auto created = std::allocate_shared<AccumulateGrad>(PoolAllocator<AccumulateGrad>(), t.impl_ptr());
  // Publish it unless another thread got there first; then link to theirs.
  while (!meta->accumulator.compare_exchange_weak(seen, created, std::memory_order_acq_rel)) {
    if (auto theirs = seen.lock()) return theirs;
  }
  return created;
}

}  // namespace mg
