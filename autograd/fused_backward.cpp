#include "fused_backward.h"

#include "checkpoint.h"
#include "grad_mode.h"

namespace mg {

TensorList fused_backward(const std::string& name, const TensorList& inputs, BackwardFormula kernel,
                          BackwardFormula formula) {
  if (!GradMode::is_enabled()) return kernel(inputs);
  // The checkpoint calls the function at once with recording off (the kernel's values), and again
  // with it on when backward reaches it (the formula's graph). The two differ in the last bits by
  // design, so they are not compared.
  return checkpoint([kernel = std::move(kernel), formula = std::move(formula)](
                        const TensorList& in) { return GradMode::is_enabled() ? formula(in) : kernel(in); },
                    inputs, {.name = name, .check_recomputation = false, .replay_random = false});
}

TensorList to_needed_inputs(const BackwardArgs& a, const TensorList& computed) {
  TensorList grads(a.needs.size());
  std::size_t next = 0;
  for (std::size_t i = 0; i < grads.size(); ++i)
    if (a.needs_input(i)) grads[i] = computed.at(next++);
  return grads;
}

}  // namespace mg
