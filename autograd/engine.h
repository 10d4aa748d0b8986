#pragma once
// The engine that walks the tape: a ready-queue over nodes in decreasing sequence number, each
// run once all the gradient it will receive has arrived.
#include "node.h"

namespace mg::engine {

struct Request {
  TensorList roots;          // outputs
  TensorList root_grads;     // one per root, defined, same shape
  TensorList inputs;         // gradients captured for these (empty for backward())
  bool accumulate = false;   // backward(): add into leaves' .grad
  bool create_graph = false;
  bool retain_graph = false;
};

// Returns one gradient per input (undefined where no path leads to it).
TensorList run(const Request& request);

}  // namespace mg::engine
