#include "activation.h"

namespace mg::nn {

std::string ActivationModule::type_name() const {
  switch (kind_) {
    case functional::Activation::ReLU:
      return "ReLU";
    case functional::Activation::GELU:
      return "GELU";
    case functional::Activation::GELUTanh:
      return "GELU(tanh)";
    case functional::Activation::Tanh:
      return "Tanh";
    case functional::Activation::Sigmoid:
      return "Sigmoid";
  }
  return "Activation";
}

Tensor ActivationModule::forward(const Params&, const Tensor& x) { return functional::activation(x, kind_); }

std::shared_ptr<Module> make_activation(functional::Activation kind) {
  return std::make_shared<ActivationModule>(kind);
}

}  // namespace mg::nn
