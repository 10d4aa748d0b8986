#pragma once
// Get-or-create access to a tensor's autograd slot.
#include "node.h"

namespace mg {

inline AutogradMeta& autograd_meta(const Tensor& t) {
  auto& slot = t.impl().autograd;
  if (!slot) slot = std::make_shared<AutogradMeta>();
  return *slot;
}

}  // namespace mg
