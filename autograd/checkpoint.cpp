#include "checkpoint.h"

#include <cmath>
#include <optional>
#include <unordered_set>
#include <utility>
#include <vector>

#include "../tensor/creation.h"
#include "../tensor/device_graph.h"
#include "autograd_meta_access.h"
#include "grad.h"
#include "grad_mode.h"

namespace mg {
namespace {

// Makes node the grad_fn of a fresh handle on t's memory.
Tensor attach(const Tensor& t, const std::shared_ptr<Node>& node) {
  Tensor out = t.detach();
  node->output_shape = out.shape();
  node->output_dtype = out.dtype();
  node->output_device = out.device();
  AutogradMeta& meta = autograd_meta(out);
  meta.requires_grad = true;
  meta.grad_fn = node;
  return out;
}

// An identity on the tape: the inputs of a recomputation under create_graph, so that the nested
// grad() stops at them instead of running on into the graph that produced the real inputs.
class AliasNode final : public Node {
 public:
  explicit AliasNode(std::shared_ptr<Node> input) : Node("checkpoint_input") { next.push_back(std::move(input)); }
  TensorList apply(const Tensor& grad) override { return {grad}; }
};

// Its sequence number is the one the next node gets: the recomputed graph's nodes have at least it.
class Marker final : public Node {
 public:
  Marker() : Node("checkpoint_marker") {}
  TensorList apply(const Tensor&) override { return {}; }
};

// The recomputed graph must end at the segment's inputs. A path to any other tensor that requires
// grad (one fn captured rather than took as an input, or a module's own parameter) would be a
// gradient the backward pass silently drops.
void check_closed(const TensorList& roots, const TensorList& inputs, uint64_t first_new, const std::string& label) {
  std::unordered_set<const TensorImpl*> input_impls;  // leaves (the first-order recomputation)
  std::unordered_set<const Node*> input_nodes;        // aliases (under create_graph)
  for (const Tensor& t : inputs) {
    input_impls.insert(&t.impl());
    if (t.grad_fn()) input_nodes.insert(t.grad_fn().get());
  }
  std::unordered_set<const Node*> seen;
  std::vector<const Node*> stack;
  for (const Tensor& root : roots) {
    MG_CHECK(root.grad_fn() || input_impls.count(&root.impl()), label, ": an output is ", describe(root),
             ", a tensor that requires grad but is not one of the inputs; pass it in inputs");
    if (root.grad_fn()) stack.push_back(root.grad_fn().get());
  }
  while (!stack.empty()) {
    const Node* node = stack.back();
    stack.pop_back();
    if (!seen.insert(node).second) continue;
    if (const auto* acc = dynamic_cast<const AccumulateGrad*>(node)) {
      MG_CHECK(input_impls.count(acc->leaf().get()), label, ": the recomputed outputs depend on a leaf (",
               shape_str(acc->output_shape), " ", acc->output_dtype,
               ") that requires grad but is not one of the inputs (captured by the function, or a module's own "
               "parameter?); its gradient would be lost: pass it in inputs");
      continue;
    }
    if (input_nodes.count(node)) continue;
    MG_CHECK(node->sequence_nr() >= first_new, label, ": the recomputed outputs depend on a tensor (",
             shape_str(node->output_shape), " ", node->output_dtype, ", made by '", node->name(),
             "') that requires grad but is not one of the inputs (captured by the function?); its gradient would be "
             "lost: pass it in inputs");
    for (const auto& child : node->next)
      if (child) stack.push_back(child.get());
  }
}

bool same_values(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const std::vector<double> x = a.values_as_double();
  const std::vector<double> y = b.values_as_double();
  for (std::size_t i = 0; i < x.size(); ++i)
    if (x[i] != y[i] && !(std::isnan(x[i]) && std::isnan(y[i]))) return false;
  return true;
}

// Puts default_generator() back where it was when the segment first ran, for the scope.
class ReplayDefaultGenerator {
 public:
  ReplayDefaultGenerator(uint64_t seed, uint64_t offset)
      : seed_(default_generator().seed()), offset_(default_generator().offset()) {
    default_generator().set_state(seed, offset);
  }
  ~ReplayDefaultGenerator() { default_generator().set_state(seed_, offset_); }
  ReplayDefaultGenerator(const ReplayDefaultGenerator&) = delete;
  ReplayDefaultGenerator& operator=(const ReplayDefaultGenerator&) = delete;

 private:
  uint64_t seed_, offset_;
};

// The segment's node. Its outputs each have a CheckpointOutput node that hands over its gradient
// here: the engine gives a node one gradient, but one recomputation should serve all outputs. The
// engine runs this node after all of them (they depend on it), with a dummy 0-element gradient.
class CheckpointNode final : public Node {
 public:
  CheckpointNode(CheckpointFn fn, const TensorList& inputs, const TensorList& outputs, const CheckpointOptions& options,
                 uint64_t seed, uint64_t offset)
      : Node(options.name),
        fn_(std::move(fn)),
        label_(options.name),
        replay_random_(options.replay_random),
        seed_(seed),
        offset_(offset) {
    inputs_.reserve(inputs.size());
    for (const Tensor& t : inputs) inputs_.emplace_back(t, /*is_output=*/false);
    num_outputs_ = outputs.size();
    grads_.resize(num_outputs_);
    if (options.check_recomputation) {
      for (const Tensor& t : outputs) {
        outputs_.push_back(t.detach());
        output_versions_.push_back(t.version());
      }
    }
  }
  ~CheckpointNode() override { release_saved(); }

  void receive(std::size_t index, const Tensor& grad) { grads_[index] = grad; }

  TensorList apply(const Tensor&) override {
    MG_CHECK(!released_, "backward of ", label_,
             ": the saved inputs were already freed by an earlier backward pass; pass retain_graph = true to the "
             "first call to run backward through the same graph twice");
    TensorList grads = std::exchange(grads_, TensorList(num_outputs_));
    const bool create_graph = GradMode::is_enabled();
    auto self = shared_from_this();

    const uint64_t first_new = Marker().sequence_nr();
    TensorList inputs;
    inputs.reserve(inputs_.size());
    for (std::size_t i = 0; i < inputs_.size(); ++i) {
      Tensor x = inputs_[i].unpack(self, label_);
      if (!next[i])
        inputs.push_back(x.detach());
      else if (create_graph)
        inputs.push_back(attach(x, std::make_shared<AliasNode>(next[i])));
      else
        inputs.push_back(x.detach().requires_grad_());
    }

    TensorList outputs;
    {
      std::optional<ReplayDefaultGenerator> replay;
      if (replay_random_) replay.emplace(seed_, offset_);
      GradModeGuard recording(true);
      outputs = fn_(inputs);
    }
    check_outputs(outputs);

    TensorList roots, root_grads;
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      if (!grads[i].defined() || !outputs[i].requires_grad()) continue;
      roots.push_back(outputs[i]);
      root_grads.push_back(grads[i]);
    }
    check_closed(roots, inputs, first_new, label_);
    TensorList wrt;
    for (std::size_t i = 0; i < inputs.size(); ++i)
      if (next[i]) wrt.push_back(inputs[i]);
    TensorList result(next.size());
    if (roots.empty() || wrt.empty()) return result;
    TensorList g = grad(roots, wrt, root_grads, {.create_graph = create_graph, .allow_unused = true});
    for (std::size_t i = 0, j = 0; i < next.size(); ++i)
      if (next[i]) result[i] = std::move(g[j++]);
    return result;
  }

  void release_saved() override {
    for (auto& s : inputs_) s.release_history();
    inputs_.clear();
    outputs_.clear();
    grads_.assign(num_outputs_, Tensor());  // still the outputs' mailboxes; apply() reports the release
    fn_ = nullptr;
    released_ = true;
  }

 private:
  void check_outputs(const TensorList& outputs) const {
    MG_CHECK(outputs.size() == num_outputs_, label_, ": recomputing for backward gave ", outputs.size(),
             " outputs, the first run ", num_outputs_);
    for (std::size_t i = 0; i < outputs_.size(); ++i) {
      MG_CHECK(outputs_[i].version() == output_versions_[i], label_, ": output ", i, " (", describe(outputs_[i]),
               ") was modified in place before backward; clone() it first");
      // Not while a graph is captured, when nothing can be read on the host: eager steps check it.
      MG_CHECK(capturing_graph(outputs_[i].device()) || same_values(outputs[i], outputs_[i]), label_,
               ": recomputing for backward gave different values for output ", i, " (", describe(outputs_[i]),
               "): the checkpointed computation is not deterministic. Random numbers are replayed only from "
               "default_generator(); state it reads (buffers, module modes, other generators) must not change "
               "between the forward and the backward pass");
    }
  }

  CheckpointFn fn_;
  std::string label_;
  bool replay_random_;
  uint64_t seed_, offset_;
  std::vector<SavedTensor> inputs_;
  std::size_t num_outputs_ = 0;
  TensorList outputs_;  // the first run's values, for check_outputs (without autograd: no cycle)
  std::vector<uint64_t> output_versions_;
  TensorList grads_;  // one per output, filled by the outputs' nodes during a backward pass
  bool released_ = false;
};

class CheckpointOutput final : public Node {
 public:
  CheckpointOutput(std::shared_ptr<CheckpointNode> segment, std::size_t index)
      : Node("checkpoint_output"), index_(index) {
    next.push_back(std::move(segment));
  }
  TensorList apply(const Tensor& grad) override {
    Node& segment = *next[0];
    static_cast<CheckpointNode&>(segment).receive(index_, grad);
    return {zeros(segment.output_shape, segment.output_dtype, segment.output_device)};
  }

 private:
  std::size_t index_;
};

}  // namespace

TensorList checkpoint(const CheckpointFn& fn, const TensorList& inputs, const CheckpointOptions& options) {
  MG_CHECK(static_cast<bool>(fn), options.name, ": no function given");
  bool record = GradMode::is_enabled();
  bool any_requires_grad = false;
  TensorList detached;
  detached.reserve(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    MG_CHECK(inputs[i].defined(), options.name, ": input ", i, " is an undefined tensor");
    any_requires_grad = any_requires_grad || inputs[i].requires_grad();
    detached.push_back(inputs[i].detach());
  }
  record = record && any_requires_grad;

  const uint64_t seed = options.replay_random ? default_generator().seed() : 0;
  const uint64_t offset = options.replay_random ? default_generator().offset() : 0;
  TensorList outputs;
  {
    NoGradGuard no_grad;
    outputs = fn(detached);
  }
  for (std::size_t i = 0; i < outputs.size(); ++i)
    MG_CHECK(outputs[i].defined(), options.name, ": output ", i, " is an undefined tensor");
  if (!record || outputs.empty()) return outputs;

  auto segment = std::make_shared<CheckpointNode>(fn, inputs, outputs, options, seed, offset);
  segment->next.reserve(inputs.size());
  for (const Tensor& t : inputs) segment->next.push_back(gradient_edge(t));
  segment->output_shape = {0};
  segment->output_dtype = outputs[0].dtype();
  segment->output_device = outputs[0].device();

  TensorList result;
  result.reserve(outputs.size());
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    if (is_floating(outputs[i].dtype()))
      result.push_back(attach(outputs[i], std::make_shared<CheckpointOutput>(segment, i)));
    else
      result.push_back(outputs[i].detach());
  }
  return result;
}

}  // namespace mg
