#pragma once
// The tape: a Node per recorded op, holding its backward formula, the tensors it saved and
// edges to the nodes of its inputs. Tensors own the nodes that produced them (grad_fn), nodes
// own the nodes of their inputs, so a tape lives exactly as long as a tensor that needs it.
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "../tensor/small_object_pool.h"
#include "../tensor/tensor.h"
#include "backward_fn.h"
#include "op_list.h"

namespace mg {

using TensorList = std::vector<Tensor>;

// A tensor kept for backward. An op's own output is kept without its grad_fn (which would be a
// cycle) and re-linked to the node on unpack. The storage version at save time is recorded so
// that an in-place change before backward is an error, not a wrong gradient.
class SavedTensor {
 public:
  SavedTensor() = default;
  SavedTensor(const Tensor& t, bool is_output);
  Tensor unpack(const std::shared_ptr<Node>& owner, std::string_view op) const;
  bool defined() const { return data_.defined(); }
  // Drops the tensor, handing its history to the iterative release of node.cpp.
  void release_history();

 private:
  Tensor data_;  // for outputs: shares storage, no autograd metadata
  bool is_output_ = false;
  uint64_t saved_version_ = 0;
};

// What a backward formula is given: the gradient of its output, its saved tensors (unpacked and
// checked), and which inputs need a gradient (an unneeded one may be returned undefined).
struct BackwardArgs {
  const Tensor& grad;
  const TensorList& saved;
  const std::vector<bool>& needs;
  bool needs_input(std::size_t i) const { return needs[i]; }
};

using BackwardFn = PooledFunction<TensorList, BackwardArgs>;

// Tensors handed to record() for the duration of the call: a braced list ({a, b}) or a
// TensorList, without copying either into a new vector.
class TensorSpan {
 public:
  TensorSpan() = default;
  TensorSpan(std::initializer_list<Tensor> list) : list_(list), from_list_(true) {}  // NOLINT
  TensorSpan(const TensorList& list) : vector_(&list) {}                             // NOLINT
  const Tensor* begin() const { return from_list_ ? list_.begin() : vector_ ? vector_->data() : nullptr; }
  const Tensor* end() const { return begin() + size(); }
  std::size_t size() const { return from_list_ ? list_.size() : vector_ ? vector_->size() : 0; }

 private:
  std::initializer_list<Tensor> list_;
  const TensorList* vector_ = nullptr;
  bool from_list_ = false;
};

class Node : public std::enable_shared_from_this<Node> {
 public:
  explicit Node(std::string name);
  virtual ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Maps the gradient of this node's output to gradients of its inputs (one per edge).
  virtual TensorList apply(const Tensor& grad) = 0;
  virtual bool is_accumulator() const { return false; }
  // Drops saved tensors after a backward pass that did not retain the graph.
  virtual void release_saved() {}

  const std::string& name() const { return name_; }
  uint64_t sequence_nr() const { return sequence_nr_; }
  // One per input; null where that input does not require grad. (Pooled: one list per op.)
  std::vector<std::shared_ptr<Node>, PoolAllocator<std::shared_ptr<Node>>> next;
  // Geometry of the output, to check what a formula returns and to describe the node.
  Shape output_shape;
  DType output_dtype = kFloat32;
  Device output_device;

 private:
  std::string name_;
  uint64_t sequence_nr_;
};

// A node recorded by a differentiable op: its formula is a function of the engine's own ops,
// so running it with recording on puts the backward pass itself on the tape.
class FunctionNode final : public Node {
 public:
  FunctionNode(OpId op, BackwardFn backward);
  ~FunctionNode() override;
  TensorList apply(const Tensor& grad) override;
  void release_saved() override;
  void save(TensorSpan tensors, const Tensor& output);
  OpId op() const { return op_; }

 private:
  OpId op_;
  BackwardFn backward_;
  std::vector<SavedTensor, PoolAllocator<SavedTensor>> saved_;
  bool released_ = false;
};

// The sink for a leaf tensor: backward() adds into the leaf's .grad(); grad() only reads what
// arrives here.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf);
  TensorList apply(const Tensor& grad) override;
  bool is_accumulator() const override { return true; }
  // Adds grad into the leaf's .grad (recorded on the tape when create_graph).
  void accumulate(const Tensor& grad, bool create_graph);
  const std::shared_ptr<TensorImpl>& leaf() const { return leaf_; }

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

struct AutogradMeta {
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;  // null for leaves
  Tensor grad;
  // Leaves only. Atomic because threads recording ops on the same leaf (a meta-batch's
  // parameters) may be the first to need it at the same time: they must all link to one.
  std::atomic<std::weak_ptr<AccumulateGrad>> accumulator;
};

// The node a gradient for t flows into: t's grad_fn, or its (possibly new) accumulator for a leaf.
// Safe to call from several threads on the same leaf.
std::shared_ptr<Node> gradient_edge(const Tensor& t);

}  // namespace mg
