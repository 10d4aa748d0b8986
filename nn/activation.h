#pragma once
// Parameter-free activation modules, for Sequential and the MLP builder.
#include <memory>

#include "functional.h"
#include "module.h"

namespace mg::nn {

class ActivationModule : public Module {
 public:
  explicit ActivationModule(functional::Activation kind) : kind_(kind) {}
  std::string type_name() const override;
  using Module::forward;
  Tensor forward(const Params& params, const Tensor& x) override;
  functional::Activation kind() const { return kind_; }

 private:
  functional::Activation kind_;
};

class ReLU : public ActivationModule {
 public:
  ReLU() : ActivationModule(functional::Activation::ReLU) {}
};
class GELU : public ActivationModule {
 public:
  explicit GELU(bool tanh_approximation = false)
      : ActivationModule(tanh_approximation ? functional::Activation::GELUTanh : functional::Activation::GELU) {}
};
class Tanh : public ActivationModule {
 public:
  Tanh() : ActivationModule(functional::Activation::Tanh) {}
};
class Sigmoid : public ActivationModule {
 public:
  Sigmoid() : ActivationModule(functional::Activation::Sigmoid) {}
};

std::shared_ptr<Module> make_activation(functional::Activation kind);

}  // namespace mg::nn
