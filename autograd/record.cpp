#include "record.h"

#include "autograd_meta_access.h"
#include "../tensor/small_object_pool.h"

namespace mg {

bool should_record_list(const TensorList& inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

TensorList defined_only(std::initializer_list<Tensor> ts) {
  TensorList out;
  for (const Tensor& t : ts)
    if (t.defined()) out.push_back(t);
  return out;
}

void record(OpId op, TensorSpan inputs, const Tensor& output, TensorSpan saved, BackwardFn backward) {
  auto node = std::allocate_shared<FunctionNode>(PoolAllocator<FunctionNode>(), op, std::move(backward));
  node->next.reserve(inputs.size());
  for (const Tensor& t : inputs) node->next.push_back(t.defined() ? gradient_edge(t) : nullptr);
  node->output_shape = output.shape();
  node->output_dtype = output.dtype();
  node->output_device = output.device();
  AutogradMeta& meta = autograd_meta(output);
  meta.requires_grad = true;
  meta.grad_fn = node;
  node->save(saved, output);
}

}  // namespace mg
