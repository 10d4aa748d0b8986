#include "dot.h"

#include <sstream>
#include <unordered_map>
#include <vector>

#include "node.h"

namespace mg {

std::string to_dot(const Tensor& t) {
  std::ostringstream out;
  out << "digraph tape {\n  rankdir=BT;\n  node [shape=box, fontname=\"monospace\"];\n";
  out << "  output [label=\"output\\n" << shape_str(t.shape()) << " " << t.dtype() << "\", shape=oval];\n";
  std::shared_ptr<Node> root = t.grad_fn();
  if (!root) {
    out << "  // " << (t.requires_grad() ? "a leaf that requires grad" : "no tape: the tensor does not require grad")
        << "\n}\n";
    return out.str();
  }
  std::unordered_map<const Node*, int> ids;
  std::vector<const Node*> stack{root.get()};
  ids[root.get()] = 0;
  while (!stack.empty()) {
    const Node* node = stack.back();
    stack.pop_back();
    const int id = ids[node];
    if (const auto* acc = dynamic_cast<const AccumulateGrad*>(node)) {
      out << "  n" << id << " [label=\"leaf\\n" << shape_str(acc->output_shape) << " " << acc->output_dtype
          << "\", style=filled, fillcolor=lightblue];\n";
    } else {
      out << "  n" << id << " [label=\"" << node->name() << " #" << node->sequence_nr() << "\\n"
          << shape_str(node->output_shape) << "\"];\n";
    }
    for (std::size_t i = 0; i < node->next.size(); ++i) {
      const Node* child = node->next[i].get();
      if (!child) continue;
      auto [it, inserted] = ids.emplace(child, static_cast<int>(ids.size()));
      if (inserted) stack.push_back(child);
      out << "  n" << it->second << " -> n" << id << " [label=\"" << i << "\"];\n";
    }
  }
  out << "  n0 -> output;\n}\n";
  return out.str();
}

}  // namespace mg
