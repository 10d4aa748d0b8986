#pragma once
// Recording on several threads at once. Each thread builds and runs its own tape; what the
// tapes share are leaves (a meta-batch's parameters). Recording an op on a leaf links the node to
// the leaf's gradient accumulator, created on first use (safely, from any thread) and freed with
// the last tape that links to it. Holding a SharedLeaves keeps each accumulator alive for the
// duration, so all the tasks of a meta-batch link to the same accumulators instead of each tape
// creating and freeing its own. The threads must take gradients with grad() (captured, not
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
