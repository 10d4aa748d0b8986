#include "grad.h"

#include "../tensor/creation.h"
#include "engine.h"
#include "ops.h"

namespace mg {
namespace {

TensorList resolve_root_grads(std::string_view api, const TensorList& outputs, const TensorList& grad_outputs) {
  MG_CHECK(!outputs.empty(), api, ": no outputs given");
  MG_CHECK(grad_outputs.empty() || grad_outputs.size() == outputs.size(), api, ": ", outputs.size(),
           " outputs but ", grad_outputs.size(), " grad_outputs");
  TensorList grads(outputs.size());
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    MG_CHECK(out.defined(), api, ": output ", i, " is an undefined tensor");
    MG_CHECK(out.requires_grad(), api, ": output ", i, " (", describe(out),
             ") does not require grad: nothing that requires grad was used to compute it, or it was computed under "
             "NoGradGuard");
    const Tensor* given = i < grad_outputs.size() && grad_outputs[i].defined() ? &grad_outputs[i] : nullptr;
    if (given) {
      MG_CHECK(given->shape() == out.shape(), api, ": grad_output ", i, " has shape ", shape_str(given->shape()),
               " but output ", i, " has shape ", shape_str(out.shape()));
      MG_CHECK(given->dtype() == out.dtype(), api, ": grad_output ", i, " has dtype ", given->dtype(),
               " but output ", i, " has dtype ", out.dtype());
      MG_CHECK(given->device() == out.device(), api, ": grad_output ", i, " is on ", given->device(),
               " but output ", i, " is on ", out.device());
      grads[i] = *given;
    } else {
      MG_CHECK(out.numel() == 1, api, ": output ", i, " has shape ", shape_str(out.shape()),
               " and is not a scalar; pass grad_outputs to say which vector-Jacobian product to take");
      grads[i] = ones(out.shape(), out.dtype(), out.device());
    }
  }
  return grads;
}

}  // namespace

TensorList grad(const TensorList& outputs, const TensorList& inputs, const TensorList& grad_outputs,
                GradOptions options) {
  TensorList root_grads = resolve_root_grads("grad", outputs, grad_outputs);
  MG_CHECK(!inputs.empty(), "grad: no inputs given");
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    MG_CHECK(inputs[i].defined(), "grad: input ", i, " is an undefined tensor");
    MG_CHECK(inputs[i].requires_grad(), "grad: input ", i, " (", describe(inputs[i]),
             ") does not require grad; call requires_grad_() on it before computing the outputs");
  }
  engine::Request request{outputs, root_grads, inputs, /*accumulate=*/false, options.create_graph,
                          options.retain_graph || options.create_graph};
  TensorList result = engine::run(request);
  for (std::size_t i = 0; i < result.size(); ++i)
    MG_CHECK(result[i].defined() || options.allow_unused, "grad: input ", i, " (", describe(inputs[i]),
             ") was not used to compute the outputs; pass allow_unused = true to get an undefined gradient instead");
  return result;
}

void backward(const TensorList& outputs, const TensorList& grad_outputs, BackwardOptions options) {
  TensorList root_grads = resolve_root_grads("backward", outputs, grad_outputs);
  engine::Request request{outputs, root_grads, {}, /*accumulate=*/true, options.create_graph,
                          options.retain_graph || options.create_graph};
  engine::run(request);
}

void Tensor::backward(const Tensor& grad_output, BackwardOptions options) const {
  mg::backward({*this}, grad_output.defined() ? TensorList{grad_output} : TensorList{}, options);
}

TensorList hvp(const std::function<Tensor(const TensorList&)>& f, const TensorList& inputs, const TensorList& v,
               GradOptions options) {
  MG_CHECK(v.size() == inputs.size(), "hvp: ", inputs.size(), " inputs but ", v.size(), " vectors");
  Tensor y = f(inputs);
  MG_CHECK(y.numel() == 1, "hvp: f must return a scalar, got shape ", shape_str(y.shape()));
  TensorList g = grad({y}, inputs, {}, {.create_graph = true, .retain_graph = true, .allow_unused = true});
  Tensor dot;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (!g[i].defined()) continue;
    MG_CHECK(v[i].shape() == inputs[i].shape(), "hvp: vector ", i, " has shape ", shape_str(v[i].shape()),
             " but input ", i, " has shape ", shape_str(inputs[i].shape()));
    Tensor term = (g[i] * v[i]).sum();
    dot = dot.defined() ? dot + term : term;
  }
  TensorList result(inputs.size());
  if (dot.defined() && dot.requires_grad()) result = grad({dot}, inputs, {}, {options.create_graph, options.retain_graph, true});
  for (std::size_t i = 0; i < result.size(); ++i)
    if (!result[i].defined()) result[i] = zeros_like(inputs[i]);
  return result;
}

Tensor jvp(const std::function<Tensor(const TensorList&)>& f, const TensorList& inputs, const TensorList& v,
           GradOptions options) {
  MG_CHECK(v.size() == inputs.size(), "jvp: ", inputs.size(), " inputs but ", v.size(), " vectors");
  Tensor y = f(inputs);
  MG_CHECK(y.requires_grad(), "jvp: the output of f does not depend on any input that requires grad");
  // J v = d/du <J^T u, v>: the vector-Jacobian product is linear in u, so differentiating it
  // with respect to u gives the forward-mode product.
  Tensor u = zeros_like(y).requires_grad_();
  TensorList vjp = grad({y}, inputs, {u}, {.create_graph = true, .retain_graph = true, .allow_unused = true});
  Tensor dot;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (!vjp[i].defined()) continue;
    MG_CHECK(v[i].shape() == inputs[i].shape(), "jvp: vector ", i, " has shape ", shape_str(v[i].shape()),
             " but input ", i, " has shape ", shape_str(inputs[i].shape()));
    Tensor term = (vjp[i] * v[i]).sum();
    dot = dot.defined() ? dot + term : term;
  }
  if (!dot.defined() || !dot.requires_grad()) return zeros_like(y);
  Tensor result = grad({dot}, {u}, {}, {options.create_graph, options.retain_graph, true})[0];
  return result.defined() ? result : zeros_like(y);
}

}  // namespace mg
