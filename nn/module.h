#pragma once
// Module: named parameters, buffers and submodules, with a forward pass that reads its
// parameters through a Params view. forward(x) uses the module's own parameters;
// forward(Params(dict), x) runs the very same code with any other set of tensors of the same
// names (MAML's fast weights: plain tensors with history). No copies of modules per task.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../tensor/tensor.h"
#include "tensor_dict.h"

namespace mg::nn {

class Module;

// How a forward pass sees its parameters: a module's own, or a TensorDict's entries under a
// prefix. Buffers (running statistics) are always the module's own and are not read through it.
class Params {
 public:
  explicit Params(const Module& module);
  explicit Params(const TensorDict& dict, std::string prefix = "");

  // The parameter with this name relative to the module; throws naming the full dotted name.
  Tensor operator[](std::string_view name) const;
  // Undefined when there is no such parameter (an optional bias).
  Tensor get(std::string_view name) const;
  // The view a submodule gets.
  Params sub(std::string_view child) const;
  const std::string& prefix() const { return prefix_; }

 private:
  const Module* module_ = nullptr;
  const TensorDict* dict_ = nullptr;
  std::string prefix_;
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The layer's type, e.g. "Linear"; used in messages and printing.
  virtual std::string type_name() const = 0;

  // Single-input modules override this; others throw (they have their own forward signatures).
  virtual Tensor forward(const Params& params, const Tensor& x);
  Tensor forward(const Tensor& x) { return forward(Params(*this), x); }
  Tensor operator()(const Tensor& x) { return forward(x); }
  Tensor operator()(const Params& params, const Tensor& x) { return forward(params, x); }

  // Recursive, with dotted names, in registration order (own entries first, then children's).
  TensorDict named_parameters() const;
  std::vector<Tensor> parameters() const;
  TensorDict named_buffers() const;
  // Parameters and buffers, each module's own before its children's (PyTorch's order).
  TensorDict state_dict() const;
  // Copies values in place. strict: a missing or unexpected key is an error naming it. A shape
  // or dtype mismatch is always an error.
  void load_state_dict(const TensorDict& state, bool strict = true);

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void zero_grad();
  // Converts every floating parameter and buffer (parameters stay leaves that require grad).
  void to(DType dtype);
  // Moves every parameter and buffer to device (parameters stay leaves that require grad).
  // Optimizers and TensorDicts taken before hold the old tensors: move the model first.
  void to(Device device);
  // The device of the first parameter (or buffer); the CPU for a module that has neither.
  Device device() const;
  // For layers whose behaviour depends on the inner-loop step (MAML++ per-step BatchNorm
  // statistics); propagates to children.
  virtual void set_inner_step(int step);
  // Whether forward() may run on several threads at once, as the tasks of a looped meta-batch do
  // (meta/task_parallel.h): true unless this module or a child draws random numbers in training
  // (dropout: the draws would depend on the threads' timing) or changes its own state in a way
  // that cannot be deferred. Layers with such state override it and also ask the base.
  virtual bool concurrent_forward() const;

  // Own (non-recursive) entries.
  Tensor param(std::string_view name) const;   // undefined if absent
  Tensor buffer(std::string_view name) const;  // undefined if absent
  void set_buffer(std::string_view name, const Tensor& value);
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }
  std::shared_ptr<Module> child(std::string_view name) const;  // throws if absent

  // A one-line-per-module summary with parameter shapes.
  std::string to_string() const;

 protected:
  // An undefined tensor registers nothing (e.g. Linear without bias).
  Tensor register_parameter(std::string name, Tensor tensor);
  Tensor register_buffer(std::string name, Tensor tensor);
  template <typename M>
  std::shared_ptr<M> register_module(std::string name, std::shared_ptr<M> module) {
    add_child(std::move(name), module);
    return module;
  }

 private:
  void add_child(std::string name, std::shared_ptr<Module> module);
  void collect(const std::string& prefix, TensorDict* params, TensorDict* buffers, bool interleave) const;
  void describe_into(std::string& out, const std::string& name, int depth) const;

  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace mg::nn
