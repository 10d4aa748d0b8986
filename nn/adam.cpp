#include "adam.h"

#include <cmath>
#include <initializer_list>
#include <string>
#include <utility>

#include "../autograd/ops.h"
#include "../tensor/kernels.h"

namespace mg::nn {

namespace {

void validate(const std::string& where, const AdamOptions& o) {
  detail::check_lr(where, o.lr);
  detail::check_unit_interval(where, "beta1", o.beta1);
  detail::check_unit_interval(where, "beta2", o.beta2);
  detail::check_non_negative(where, "eps", o.eps);
  detail::check_non_negative(where, "weight_decay", o.weight_decay);
}

// The fused kernel takes contiguous tensors of one dtype and device; anything else (a strided
// parameter, state loaded in another dtype) takes the composite path.
bool fusable(const Tensor& p, const Tensor& grad, std::initializer_list<Tensor> state) {
  if (!p.is_contiguous() || grad.shape() != p.shape() || grad.dtype() != p.dtype() || grad.device() != p.device())
    return false;
  for (const Tensor& t : state)
    if (t.defined() && (!t.is_contiguous() || t.shape() != p.shape() || t.dtype() != p.dtype() ||
                        t.device() != p.device()))
      return false;
  return true;
}

std::vector<ParamList> lists_of(const std::vector<AdamGroup>& groups) {
  std::vector<ParamList> out;
  for (const auto& g : groups) out.push_back(g.params);
  return out;
}

AdamOptions from_adamw(const AdamWOptions& o) {
  return {o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, o.amsgrad, o.maximize};
}

std::vector<AdamGroup> from_adamw(std::vector<AdamWGroup> groups) {
  std::vector<AdamGroup> out;
  for (auto& g : groups) out.push_back({std::move(g.params), from_adamw(g.options)});
  return out;
}

}  // namespace

Adam::Adam(ParamList params, AdamOptions options) : Adam(std::vector<AdamGroup>{{std::move(params), options}}) {}

Adam::Adam(std::vector<AdamGroup> groups) : Adam("Adam", std::move(groups), false) {}

Adam::Adam(std::string type, std::vector<AdamGroup> groups, bool decoupled_weight_decay)
    : Optimizer(std::move(type), lists_of(groups)), decoupled_(decoupled_weight_decay) {
  for (std::size_t g = 0; g < groups.size(); ++g) {
    validate(where() + "group " + std::to_string(g) + ": ", groups[g].options);
    options_.push_back(groups[g].options);
  }
}

AdamW::AdamW(ParamList params, AdamWOptions options)
    : AdamW(std::vector<AdamWGroup>{{std::move(params), options}}) {}

AdamW::AdamW(std::vector<AdamWGroup> groups) : Adam("AdamW", from_adamw(std::move(groups)), true) {}

double Adam::lr(std::size_t group) const { return options(group).lr; }

const AdamOptions& Adam::options(std::size_t group) const {
  MG_CHECK(group < options_.size(), where(), "no parameter group ", group, " (there are ", options_.size(), ")");
  return options_[group];
}

void Adam::set_group_lr(std::size_t group, double lr) { options_[group].lr = lr; }

void Adam::step() {
  for_each_param_with_grad([&](std::size_t g, std::size_t index, Tensor& p, const Tensor& grad_in) {
    const AdamOptions& o = options_[g];
    ParamState& st = state(index);
    if (st.step == 0) {
      st.buffers.set("exp_avg", zeros_like(p));
      st.buffers.set("exp_avg_sq", zeros_like(p));
    }
    if (o.amsgrad && !st.buffers.contains("max_exp_avg_sq")) st.buffers.set("max_exp_avg_sq", zeros_like(p));
    st.step += 1;

    const double t = static_cast<double>(st.step);
    const double bias_correction1 = 1.0 - std::pow(o.beta1, t);
    const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(o.beta2, t));
    const double step_size = o.lr / bias_correction1;
    Tensor exp_avg = st.buffers.at("exp_avg");
    Tensor exp_avg_sq = st.buffers.at("exp_avg_sq");
    Tensor max_sq = o.amsgrad ? st.buffers.at("max_exp_avg_sq") : Tensor();
    if (fusable(p, grad_in, {exp_avg, exp_avg_sq, max_sq})) {
      const double decay_factor = decoupled_ ? 1.0 - o.lr * o.weight_decay : 1.0;
      const Backend::AdamStep args{o.beta1,   o.beta2,    o.eps,      o.weight_decay, decay_factor, bias_correction2_sqrt,
                                   step_size, decoupled_, o.amsgrad, o.maximize};
      kernels::adam_step(p, grad_in, exp_avg, exp_avg_sq, max_sq, args);
      for (const Tensor* t : {&p, &exp_avg, &exp_avg_sq, &max_sq})
        if (t->defined()) t->bump_version();
      return;
    }

    // The same update in tensor ops, for parameters or state that are not plain contiguous.
    Tensor grad = o.maximize ? neg(grad_in) : grad_in;
    if (o.weight_decay != 0) {
      if (decoupled_) {
        p.mul_(1.0 - o.lr * o.weight_decay);
      } else {
        grad = grad + p * o.weight_decay;
      }
    }
    exp_avg.mul_(o.beta1);
    exp_avg.add_(grad, 1.0 - o.beta1);
    exp_avg_sq.mul_(o.beta2);
    // (value * g) * g: the order of PyTorch's addcmul_ kernel.
    exp_avg_sq.add_(grad * (1.0 - o.beta2) * grad);
    Tensor second = exp_avg_sq;
    if (o.amsgrad) {
      max_sq.copy_(maximum(max_sq, exp_avg_sq));
      second = max_sq;
    }
    const Tensor denom = sqrt(second) / bias_correction2_sqrt + o.eps;
    // (value * m) / denom: the order of PyTorch's addcdiv_ kernel.
    p.add_(exp_avg * -step_size / denom);
  });
}

void Adam::write_hyperparameters(std::size_t group, MetadataWriter& out) const {
  const AdamOptions& o = options_[group];
  out.put_double("lr", o.lr);
  out.put_double("beta1", o.beta1);
  out.put_double("beta2", o.beta2);
  out.put_double("eps", o.eps);
  out.put_double("weight_decay", o.weight_decay);
  out.put_bool("amsgrad", o.amsgrad);
  out.put_bool("maximize", o.maximize);
}

std::function<void()> Adam::read_hyperparameters(const MetadataReader& in) {
  std::vector<AdamOptions> staged(options_.size());
  for (std::size_t g = 0; g < staged.size(); ++g) {
    const MetadataReader r = in.sub("param_groups." + std::to_string(g) + ".");
    AdamOptions& o = staged[g];
    o.lr = r.get_double("lr");
    o.beta1 = r.get_double("beta1");
    o.beta2 = r.get_double("beta2");
    o.eps = r.get_double("eps");
    o.weight_decay = r.get_double("weight_decay");
    o.amsgrad = r.get_bool("amsgrad");
    o.maximize = r.get_bool("maximize");
    validate(in.context() + ": group " + std::to_string(g) + ": ", o);
  }
  return [this, staged = std::move(staged)]() mutable { options_ = std::move(staged); };
}

}  // namespace mg::nn
