#include "shared_leaves.h"

#include "../tensor/error.h"

namespace mg {

SharedLeaves::SharedLeaves(const TensorList& leaves) {
  accumulators_.reserve(leaves.size());
  for (const Tensor& leaf : leaves) {
    MG_CHECK(leaf.defined(), "SharedLeaves: an undefined tensor was given as a leaf");
    MG_CHECK(leaf.is_leaf(), "SharedLeaves: ", describe(leaf),
             " is the result of a recorded op, not a leaf; only leaves may be shared between threads that record");
    if (leaf.requires_grad()) accumulators_.push_back(gradient_edge(leaf));
  }
}

}  // namespace mg
