#include "sgd.h"

#include <string>
#include <utility>

#include "../autograd/ops.h"

namespace mg::nn {

namespace {

void validate(const std::string& where, const SGDOptions& o) {
  detail::check_lr(where, o.lr);
  detail::check_non_negative(where, "momentum", o.momentum);
  detail::check_non_negative(where, "dampening", o.dampening);
  detail::check_non_negative(where, "weight_decay", o.weight_decay);
  MG_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0), where,
           "Nesterov momentum requires momentum > 0 and dampening = 0 (got momentum ", o.momentum, ", dampening ",
           o.dampening, ")");
}

std::vector<ParamList> lists_of(const std::vector<SGDGroup>& groups) {
  std::vector<ParamList> out;
  for (const auto& g : groups) out.push_back(g.params);
  return out;
}

}  // namespace

SGD::SGD(ParamList params, SGDOptions options) : SGD(std::vector<SGDGroup>{{std::move(params), options}}) {}

SGD::SGD(std::vector<SGDGroup> groups) : Optimizer("SGD", lists_of(groups)) {
  for (std::size_t g = 0; g < groups.size(); ++g) {
    validate(where() + "group " + std::to_string(g) + ": ", groups[g].options);
    options_.push_back(groups[g].options);
  }
}

double SGD::lr(std::size_t group) const { return options(group).lr; }

const SGDOptions& SGD::options(std::size_t group) const {
  MG_CHECK(group < options_.size(), where(), "no parameter group ", group, " (there are ", options_.size(), ")");
  return options_[group];
}

void SGD::set_group_lr(std::size_t group, double lr) { options_[group].lr = lr; }

void SGD::step() {
  for_each_param_with_grad([&](std::size_t g, std::size_t index, Tensor& p, const Tensor& grad) {
    const SGDOptions& o = options_[g];
    Tensor d_p = o.maximize ? neg(grad) : grad;
    if (o.weight_decay != 0) d_p = d_p + p * o.weight_decay;
    if (o.momentum != 0) {
      TensorDict& buffers = state(index).buffers;
      Tensor buf = buffers.get("momentum_buffer");
      if (!buf.defined()) {
        buf = d_p.clone();
        buffers.insert("momentum_buffer", buf);
      } else {
        buf.mul_(o.momentum);
        buf.add_(d_p, 1.0 - o.dampening);
      }
      d_p = o.nesterov ? d_p + buf * o.momentum : buf;
    }
    p.add_(d_p, -o.lr);
  });
}

void SGD::write_hyperparameters(std::size_t group, MetadataWriter& out) const {
  const SGDOptions& o = options_[group];
  out.put_double("lr", o.lr);
  out.put_double("momentum", o.momentum);
  out.put_double("dampening", o.dampening);
  out.put_double("weight_decay", o.weight_decay);
  out.put_bool("nesterov", o.nesterov);
  out.put_bool("maximize", o.maximize);
}

std::function<void()> SGD::read_hyperparameters(const MetadataReader& in) {
  std::vector<SGDOptions> staged(options_.size());
  for (std::size_t g = 0; g < staged.size(); ++g) {
    const MetadataReader r = in.sub("param_groups." + std::to_string(g) + ".");
    SGDOptions& o = staged[g];
    o.lr = r.get_double("lr");
    o.momentum = r.get_double("momentum");
    o.dampening = r.get_double("dampening");
    o.weight_decay = r.get_double("weight_decay");
    o.nesterov = r.get_bool("nesterov");
    o.maximize = r.get_bool("maximize");
    validate(in.context() + ": group " + std::to_string(g) + ": ", o);
  }
  return [this, staged = std::move(staged)]() mutable { options_ = std::move(staged); };
}

}  // namespace mg::nn
