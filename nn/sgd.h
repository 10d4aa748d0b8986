#pragma once
// Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay,
// as torch.optim.SGD (PyTorch 1.13). With g the gradient, per parameter:
//   g <- g + weight_decay * p
//   b <- g                                     on the parameter's first update (no dampening)
//   b <- momentum * b + (1 - dampening) * g    afterwards
//   g <- g + momentum * b  (Nesterov)   or   g <- b
//   p <- p - lr * g
// momentum = 0 keeps no state. maximize ascends (the gradient's sign is flipped first).
#include <vector>

#include "optimizer.h"

namespace mg::nn {

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;  // needs momentum > 0 and dampening = 0
  bool maximize = false;
};

using SGDGroup = ParamGroup<SGDOptions>;

class SGD : public Optimizer {
 public:
  SGD(ParamList params, SGDOptions options);
  explicit SGD(std::vector<SGDGroup> groups);

  void step() override;
  double lr(std::size_t group = 0) const override;
  const SGDOptions& options(std::size_t group = 0) const;

 protected:
  void set_group_lr(std::size_t group, double lr) override;
  void write_hyperparameters(std::size_t group, MetadataWriter& out) const override;
  std::function<void()> read_hyperparameters(const MetadataReader& in) override;
  std::vector<std::string> state_names() const override { return {"momentum_buffer"}; }

 private:
  std::vector<SGDOptions> options_;  // per group
};

}  // namespace mg::nn
