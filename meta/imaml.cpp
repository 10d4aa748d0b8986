#include "imaml.h"

#include <cmath>

#include "../autograd/grad.h"
#include "../autograd/grad_mode.h"
#include "../autograd/ops.h"

namespace mg::meta {
namespace {

double dot(const TensorList& a, const TensorList& b) {
  double total = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) total += (a[i] * b[i]).sum().item();
  return total;
}

TensorList axpy(double alpha, const TensorList& x, const TensorList& y) {  // alpha x + y
  TensorList out;
  for (std::size_t i = 0; i < x.size(); ++i) out.push_back(x[i] * alpha + y[i]);
  return out;
}

nn::TensorDict named(const std::vector<std::string>& names, const TensorList& values) {
  nn::TensorDict d;
  for (std::size_t i = 0; i < names.size(); ++i) d.insert(names[i], values[i]);
  return d;
}

}  // namespace

nn::TensorDict imaml_adapt(nn::Module& model, const nn::TensorDict& params, const Task& task, const LossFn& loss,
                           const ImamlOptions& options) {
  MG_CHECK(options.lambda > 0, "imaml: lambda must be positive, got ", options.lambda);
  MG_CHECK(options.inner_steps >= 0, "imaml: inner_steps must be >= 0, got ", options.inner_steps);
  TensorList theta, phi;
  for (const auto& [name, p] : params) {
    theta.push_back(p.detach());
    phi.push_back(p.detach().clone().requires_grad_());
  }
  const std::vector<std::string> names = params.keys();
  for (int step = 0; step < options.inner_steps; ++step) {
    model.set_inner_step(step);
    Tensor support_loss = loss(model.forward(nn::Params(named(names, phi)), task.support_x), task.support_y);
    TensorList g = grad({support_loss}, phi, {}, {.allow_unused = true});
    NoGradGuard no_grad;
    for (std::size_t i = 0; i < phi.size(); ++i) {
      Tensor total = phi[i] - theta[i];
      total = total * options.lambda;
      if (g[i].defined()) total = total + g[i];
      phi[i] = (phi[i] - total * options.inner_lr).detach().requires_grad_();
    }
  }
  model.set_inner_step(options.inner_steps);
  return named(names, phi);
}

ImamlResult imaml_meta_gradient(nn::Module& model, const nn::TensorDict& params, const Task& task, const LossFn& loss,
                                const ImamlOptions& options) {
  MG_CHECK(options.cg_steps > 0, "imaml: cg_steps must be positive, got ", options.cg_steps);
  const std::vector<std::string> names = params.keys();
  // Inner problem, first order: gradient descent on the proximally regularised support loss.
  const nn::TensorDict adapted = imaml_adapt(model, params, task, loss, options);
  TensorList phi;
  for (const auto& name : names) phi.push_back(adapted.at(name));

  ImamlResult result;
  Tensor query_output = model.forward(nn::Params(named(names, phi)), task.query_x);
  Tensor query_loss = loss(query_output, task.query_y);
  result.query_loss = query_loss.item();
  result.query_output = query_output.detach();
  TensorList gq = grad({query_loss}, phi, {}, {.allow_unused = true});
  for (std::size_t i = 0; i < gq.size(); ++i)
    if (!gq[i].defined()) gq[i] = zeros_like(phi[i]);

  // (I + H / lambda) x = gq by conjugate gradient; H v from double backward of the support loss.
  Tensor support_loss = loss(model.forward(nn::Params(named(names, phi)), task.support_x), task.support_y);
  TensorList gs = grad({support_loss}, phi, {}, {.create_graph = true, .allow_unused = true});
  auto apply = [&](const TensorList& v) {
    Tensor inner;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (!gs[i].defined() || !gs[i].requires_grad()) continue;
      Tensor term = (gs[i] * v[i]).sum();
      inner = inner.defined() ? inner + term : term;
    }
    TensorList hv(v.size());
    if (inner.defined()) hv = grad({inner}, phi, {}, {.retain_graph = true, .allow_unused = true});
    TensorList out;
    for (std::size_t i = 0; i < v.size(); ++i)
      out.push_back(hv[i].defined() ? v[i] + hv[i].detach() / options.lambda : v[i]);
    return out;
  };
  NoGradGuard no_grad_outside_hvp;
  TensorList x(gq.size());
  for (std::size_t i = 0; i < gq.size(); ++i) x[i] = zeros_like(gq[i]);
  TensorList r = gq, p = gq;
  double rr = dot(r, r);
  const double norm_b = std::sqrt(rr);
  for (int k = 0; k < options.cg_steps && rr > 0; ++k) {
    TensorList ap;
    {
      GradModeGuard enable(true);
      ap = apply(p);
    }
    const double alpha = rr / dot(p, ap);
    x = axpy(alpha, p, x);
    r = axpy(-alpha, ap, r);
    const double rr_next = dot(r, r);
    p = axpy(rr_next / rr, p, r);
    rr = rr_next;
  }
  result.cg_residual = norm_b > 0 ? std::sqrt(rr) / norm_b : 0.0;
  result.meta_gradient = named(names, x);
  return result;
}

}  // namespace mg::meta
