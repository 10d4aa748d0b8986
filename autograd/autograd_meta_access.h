#pragma once
// Get-or-create access to a tensor's autograd slot.
#include "node.h"
#include "../tensor/small_object_pool.h"

namespace mg {

inline AutogradMeta& autograd_meta(const Tensor& t) {
  auto& slot = t.impl().autograd;
  if (!slot) slot = std::allocate_shared<AutogradMeta>(PoolAllocator<AutogradMeta>());
  return *slot;
}

}  // namespace mg
