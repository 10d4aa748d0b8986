#include "engine.h"

#include <cmath>
#include <cstdint>
#include <memory>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "../tensor/backend.h"
#include "../tensor/creation.h"
#include "grad_mode.h"
#include "ops.h"

namespace mg::engine {
namespace {

struct NodeState {
  int pending = 0;      // gradients still to arrive from needed parents
  bool needed = false;  // some capture target or leaf to accumulate is reachable from here
  bool visited = false;
  Tensor buffer;  // sum of the gradients that arrived so far
};

struct BySequence {
  bool operator()(const Node* a, const Node* b) const { return a->sequence_nr() < b->sequence_nr(); }
};

void check_finite(const Node& node, std::size_t input, const Tensor& g) {
  for (double v : g.values_as_double())
    MG_CHECK(std::isfinite(v), "anomaly: the backward of '", node.name(), "' (forward op #", node.sequence_nr(),
             ") produced NaN or Inf in the gradient for its input ", input, " (", describe(g), ")");
}

// Adds g to the sum of the gradients that reached a node. Without create_graph, a sum the engine
// alone holds (no other tensor shares its storage: not a saved input, not a gradient also given
// to another node) is added to in place: one pass over memory instead of a new tensor and two.
// Recorded backward passes always make a new tensor, the op their graph needs.
void add_into(Tensor& buffer, const Tensor& g, bool may_add_in_place) {
  if (!buffer.defined()) {
    buffer = g;
    return;
  }
  if (may_add_in_place && buffer.impl_ptr().use_count() == 1 && buffer.storage().use_count() == 1 &&
      buffer.is_contiguous() && buffer.shape() == g.shape() && buffer.dtype() == g.dtype() &&
      buffer.device() == g.device() && !buffer.requires_grad()) {
    backend_for(buffer.device()).binary(BinaryOp::Add, buffer, g, buffer);
    return;
  }
  buffer = buffer + g;
}

}  // namespace

// The per-node state of one backward pass, looked up several times per node: an open-addressing
// table (linear probing, power-of-two capacity) keyed by node address, with the states in a
// vector in discovery order. A pass over a tape of thousands of small ops spends a noticeable
// share of its time here, so it avoids a heap node per entry.
class NodeStates {
 public:
  NodeStates() : slots_(64, kEmpty) {}

  NodeState& operator[](Node* node) {
    std::size_t i = slot_of(node);
    if (slots_[i] != kEmpty) return state(slots_[i]);
    if ((nodes_.size() + 1) * 2 > slots_.size()) {
      grow();
      i = slot_of(node);
    }
    const std::size_t index = nodes_.size();
    slots_[i] = static_cast<uint32_t>(index);
    nodes_.push_back(node);
    if ((index >> kChunkBits) == chunks_.size()) chunks_.push_back(std::make_unique<NodeState[]>(kChunk));
    return state(index);
  }
  std::size_t size() const { return nodes_.size(); }
  Node* node(std::size_t i) const { return nodes_[i]; }
  NodeState& state(std::size_t i) { return chunks_[i >> kChunkBits][i & (kChunk - 1)]; }

 private:
  static constexpr uint32_t kEmpty = UINT32_MAX;

  // The slot holding node, or the empty slot where it would go.
  std::size_t slot_of(Node* node) const {
    const std::size_t mask = slots_.size() - 1;
    // A full 64-bit mix (MurmurHash3's finaliser): pool-allocated nodes sit at regular strides,
    // which simpler hashes map onto long probe runs.
    uint64_t h = reinterpret_cast<std::uintptr_t>(node);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    std::size_t i = static_cast<std::size_t>(h) & mask;
    while (slots_[i] != kEmpty && nodes_[slots_[i]] != node) i = (i + 1) & mask;
    return i;
  }
  void grow() {
    slots_.assign(slots_.size() * 2, kEmpty);
    for (std::size_t k = 0; k < nodes_.size(); ++k) slots_[slot_of(nodes_[k])] = static_cast<uint32_t>(k);
  }

  std::vector<uint32_t> slots_;
  std::vector<Node*> nodes_;
  // Fixed-size chunks: references stay valid as the table grows.
  static constexpr std::size_t kChunkBits = 8, kChunk = std::size_t{1} << kChunkBits;
  std::vector<std::unique_ptr<NodeState[]>> chunks_;
};

TensorList run(const Request& request) {
  NodeStates states;
  std::unordered_map<Node*, std::vector<std::size_t>> captures;
  std::vector<std::shared_ptr<Node>> keep_alive;  // accumulators created for inputs

  for (std::size_t i = 0; i < request.inputs.size(); ++i) {
    auto node = gradient_edge(request.inputs[i]);
    captures[node.get()].push_back(i);
    keep_alive.push_back(std::move(node));
  }

  // Discover the graph (iterative post-order DFS) and mark nodes from which a target is reachable.
  std::vector<Node*> roots;
  for (const Tensor& root : request.roots) {
    auto node = gradient_edge(root);
    roots.push_back(node.get());
    keep_alive.push_back(std::move(node));
  }
  struct Frame {
    Node* node;
    std::size_t next_child;
  };
  std::vector<Frame> stack;
  for (Node* root : roots) {
    if (states[root].visited) continue;
    states[root].visited = true;
    stack.push_back({root, 0});
    while (!stack.empty()) {
      Frame& frame = stack.back();
      if (frame.next_child < frame.node->next.size()) {
        Node* child = frame.node->next[frame.next_child++].get();
        if (child && !states[child].visited) {
          states[child].visited = true;
          stack.push_back({child, 0});
        }
        continue;
      }
      Node* node = frame.node;
      stack.pop_back();
      NodeState& state = states[node];
      state.needed = captures.count(node) > 0 || (request.accumulate && node->is_accumulator());
      for (const auto& child : node->next)
        if (child && states[child.get()].needed) state.needed = true;
    }
  }
  for (std::size_t k = 0; k < states.size(); ++k) {
    Node* node = states.node(k);
    if (!states.state(k).needed) continue;
    for (const auto& child : node->next)
      if (child && states[child.get()].needed) ++states[child.get()].pending;
  }

  TensorList results(request.inputs.size());
  std::priority_queue<Node*, std::vector<Node*>, BySequence> ready;
  for (std::size_t i = 0; i < roots.size(); ++i) {
    GradModeGuard mode(request.create_graph);
    add_into(states[roots[i]].buffer, request.root_grads[i], false);
  }
  std::unordered_set<Node*> queued;
  for (Node* root : roots) {
    const NodeState& state = states[root];
    if (state.needed && state.pending == 0 && queued.insert(root).second) ready.push(root);
  }

  while (!ready.empty()) {
    Node* node = ready.top();
    ready.pop();
    NodeState& state = states[node];
    Tensor grad = std::move(state.buffer);
    state.buffer = Tensor();

    if (auto it = captures.find(node); it != captures.end()) {
      Tensor captured = grad.defined() ? grad : zeros(node->output_shape, node->output_dtype, node->output_device);
      for (std::size_t i : it->second) results[i] = captured;
    }
    if (node->is_accumulator()) {
      if (request.accumulate && grad.defined())
        static_cast<AccumulateGrad*>(node)->accumulate(grad, request.create_graph);
      continue;
    }

    bool feeds_needed = false;
    for (const auto& child : node->next)
      if (child && states[child.get()].needed) feeds_needed = true;

    TensorList input_grads;
    if (feeds_needed && grad.defined()) {
      GradModeGuard mode(request.create_graph);
      input_grads = node->apply(grad);
      MG_CHECK(input_grads.size() == node->next.size(), "backward of ", node->name(), " returned ", input_grads.size(),
               " gradients for ", node->next.size(), " inputs");
    }
    // Only a node that ran gives up its saved tensors: a captured input's own node (not run when
    // nothing beyond it is needed) must stay usable for a later backward, as in PyTorch.
    if (!request.retain_graph && !input_grads.empty()) node->release_saved();

    for (std::size_t i = 0; i < node->next.size(); ++i) {
      Node* child = node->next[i].get();
      if (!child) continue;
      NodeState& child_state = states[child];
      if (!child_state.needed) continue;
      if (i < input_grads.size() && input_grads[i].defined()) {
        const Tensor& g = input_grads[i];
        MG_CHECK(g.shape() == child->output_shape, "backward of ", node->name(), " returned a gradient of shape ",
                 shape_str(g.shape()), " for input ", i, " of shape ", shape_str(child->output_shape));
        if (AnomalyMode::is_enabled()) check_finite(*node, i, g);
        GradModeGuard mode(request.create_graph);
        add_into(child_state.buffer, g, !request.create_graph);
      }
      if (--child_state.pending == 0) ready.push(child);
    }
  }
  return results;
}

}  // namespace mg::engine
