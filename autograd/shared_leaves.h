#pragma once
// Recording on several threads at once. Each thread builds and runs its own tape; what the
// tapes share are leaves (a meta-batch's parameters). Recording an op on a leaf links the node to
// the leaf's gradient accumulator, which is created on first use and otherwise only looked up:
// holding a SharedLeaves for the duration makes every such link a lookup, so no two threads ever
// create one at the same time. The threads must then take gradients with grad() (captured, not
// accumulated), since backward() would add into the same .grad() concurrently.
#include <memory>
#include <vector>

#include "node.h"

namespace mg {

class SharedLeaves {
 public:
  // Creates (or finds) the accumulator of each leaf that requires grad and holds it.
  explicit SharedLeaves(const TensorList& leaves);
  SharedLeaves(const SharedLeaves&) = delete;
  SharedLeaves& operator=(const SharedLeaves&) = delete;

 private:
  std::vector<std::shared_ptr<Node>> accumulators_;
};

}  // namespace mg
