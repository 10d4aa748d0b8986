#include "module.h"

#include "../autograd/grad_mode.h"
#include "../tensor/kernels.h"

namespace mg::nn {

Params::Params(const Module& module) : module_(&module) {}
Params::Params(const TensorDict& dict, std::string prefix) : dict_(&dict), prefix_(std::move(prefix)) {}

Tensor Params::get(std::string_view name) const {
  if (module_) return module_->param(name);
  return dict_->get(prefix_ + std::string(name));
}

Tensor Params::operator[](std::string_view name) const {
  Tensor t = get(name);
  MG_CHECK(t.defined(), "params: no parameter named '", prefix_, name, "'",
           module_ ? " in module " + module_->type_name() : std::string(" in the given parameter set"));
  return t;
}

Params Params::sub(std::string_view child) const {
  if (module_) {
    Params p(*module_->child(child));
    p.prefix_ = prefix_ + std::string(child) + ".";
    return p;
  }
  return Params(*dict_, prefix_ + std::string(child) + ".");
}

Tensor Module::forward(const Params&, const Tensor&) {
  MG_FAIL(type_name(), ": this module has no single-input forward; call its own forward method");
}

Tensor Module::register_parameter(std::string name, Tensor tensor) {
  if (!tensor.defined()) return tensor;
  for (const auto& [n, t] : params_) MG_CHECK(n != name, type_name(), ": parameter '", name, "' registered twice");
  Tensor leaf = tensor.detach().requires_grad_();
  params_.emplace_back(std::move(name), leaf);
  return leaf;
}

Tensor Module::register_buffer(std::string name, Tensor tensor) {
  if (!tensor.defined()) return tensor;
  for (const auto& [n, t] : buffers_) MG_CHECK(n != name, type_name(), ": buffer '", name, "' registered twice");
  buffers_.emplace_back(std::move(name), tensor);
  return tensor;
}

void Module::add_child(std::string name, std::shared_ptr<Module> module) {
  MG_CHECK(module != nullptr, type_name(), ": submodule '", name, "' is null");
  for (const auto& [n, m] : children_) MG_CHECK(n != name, type_name(), ": submodule '", name, "' registered twice");
  children_.emplace_back(std::move(name), std::move(module));
}

Tensor Module::param(std::string_view name) const {
  for (const auto& [n, t] : params_)
    if (n == name) return t;
  return Tensor();
}

Tensor Module::buffer(std::string_view name) const {
  for (const auto& [n, t] : buffers_)
    if (n == name) return t;
  return Tensor();
}

void Module::set_buffer(std::string_view name, const Tensor& value) {
  for (auto& [n, t] : buffers_) {
    if (n == name) {
      t = value;
      return;
    }
  }
  MG_FAIL(type_name(), ": no buffer named '", name, "'");
}

std::shared_ptr<Module> Module::child(std::string_view name) const {
  for (const auto& [n, m] : children_)
    if (n == name) return m;
  MG_FAIL(type_name(), ": no submodule named '", name, "'");
}

void Module::collect(const std::string& prefix, TensorDict* params, TensorDict* buffers, bool interleave) const {
  if (params)
    for (const auto& [n, t] : params_) params->insert(prefix + n, t);
  if (buffers)
    for (const auto& [n, t] : buffers_) (interleave ? params : buffers)->insert(prefix + n, t);
  for (const auto& [n, m] : children_) m->collect(prefix + n + ".", params, buffers, interleave);
}

TensorDict Module::named_parameters() const {
  TensorDict out;
  collect("", &out, nullptr, false);
  return out;
}

std::vector<Tensor> Module::parameters() const { return named_parameters().values(); }

TensorDict Module::named_buffers() const {
  TensorDict out;
  collect("", nullptr, &out, false);
  return out;
}

TensorDict Module::state_dict() const {
  TensorDict out;
  collect("", &out, &out, true);
  return out;
}

void Module::load_state_dict(const TensorDict& state, bool strict) {
  const TensorDict mine = state_dict();
  if (strict) {
    for (const auto& [name, t] : mine)
      MG_CHECK(state.contains(name), "load_state_dict: missing key '", name, "' for ", type_name());
    for (const auto& [name, t] : state)
      MG_CHECK(mine.contains(name), "load_state_dict: unexpected key '", name, "' for ", type_name());
  }
  for (const auto& [name, target] : mine) {
    Tensor source = state.get(name);
    if (!source.defined()) continue;
    MG_CHECK(source.shape() == target.shape(), "load_state_dict: '", name, "' has shape ", shape_str(source.shape()),
             " in the state dict but ", shape_str(target.shape()), " in the module");
    MG_CHECK(source.dtype() == target.dtype(), "load_state_dict: '", name, "' has dtype ", source.dtype(),
             " in the state dict but ", target.dtype(), " in the module");
  }
  NoGradGuard no_grad;
  for (const auto& [name, target] : mine) {
    Tensor source = state.get(name);
    if (source.defined()) Tensor(target).copy_(source);
  }
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, m] : children_) m->train(on);
}

void Module::zero_grad() {
  for (auto& [n, t] : params_) t.set_grad(Tensor());
  for (auto& [n, m] : children_) m->zero_grad();
}

void Module::to(DType dtype) {
  for (auto& [n, t] : params_)
    if (is_floating(t.dtype()) && t.dtype() != dtype) t = kernels::cast(t, dtype).requires_grad_();
  for (auto& [n, t] : buffers_)
    if (is_floating(t.dtype()) && t.dtype() != dtype) t = kernels::cast(t, dtype);
  for (auto& [n, m] : children_) m->to(dtype);
}

void Module::to(Device device) {
  for (auto& [n, t] : params_)
    if (t.device() != device) t = t.detach().to(device).requires_grad_();
  for (auto& [n, t] : buffers_)
    if (t.device() != device) t = t.to(device);
  for (auto& [n, m] : children_) m->to(device);
}

Device Module::device() const {
  for (const auto& [n, t] : named_parameters()) return t.device();
  for (const auto& [n, t] : state_dict()) return t.device();
  return kCPU;
}

bool Module::concurrent_forward() const {
  for (const auto& [n, m] : children_)
    if (!m->concurrent_forward()) return false;
  return true;
}

void Module::set_inner_step(int step) {
  for (auto& [n, m] : children_) m->set_inner_step(step);
}

void Module::describe_into(std::string& out, const std::string& name, int depth) const {
  out += std::string(2 * depth, ' ') + (name.empty() ? "" : name + ": ") + type_name();
  for (const auto& [n, t] : params_) out += " " + n + shape_str(t.shape());
  out += "\n";
  for (const auto& [n, m] : children_) m->describe_into(out, n, depth + 1);
}

std::string Module::to_string() const {
  std::string out;
  describe_into(out, "", 0);
  return out;
}

}  // namespace mg::nn
