#pragma once
// Adam and AdamW as torch.optim.Adam / AdamW (PyTorch 1.13). Per parameter, with t its own step
// count (a parameter skipped for want of a gradient does not advance it):
//   Adam:  g <- g + weight_decay * p             (L2 penalty folded into the gradient)
//   AdamW: p <- p * (1 - lr * weight_decay)      (decoupled decay, before the moments)
//   m <- beta1 * m + (1 - beta1) * g
//   v <- beta2 * v + (1 - beta2) * g * g
//   v_max <- max(v_max, v)                       (amsgrad; then used in place of v)
//   denom <- sqrt(v) / sqrt(1 - beta2^t) + eps
//   p <- p - (lr / (1 - beta1^t)) * m / denom
// eps is added after the bias correction of sqrt(v), exactly where PyTorch adds it; the moments
// start at zero. maximize ascends (the gradient's sign is flipped first).
#include <vector>

#include "optimizer.h"

namespace mg::nn {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool amsgrad = false;
  bool maximize = false;
};

// The same settings with AdamW's default decay.
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool amsgrad = false;
  bool maximize = false;
};

using AdamGroup = ParamGroup<AdamOptions>;
using AdamWGroup = ParamGroup<AdamWOptions>;

class Adam : public Optimizer {
 public:
  Adam(ParamList params, AdamOptions options);
  explicit Adam(std::vector<AdamGroup> groups);

  void step() override;
  double lr(std::size_t group = 0) const override;
  const AdamOptions& options(std::size_t group = 0) const;

 protected:
  Adam(std::string type, std::vector<AdamGroup> groups, bool decoupled_weight_decay);

  void set_group_lr(std::size_t group, double lr) override;
  void write_hyperparameters(std::size_t group, MetadataWriter& out) const override;
  std::function<void()> read_hyperparameters(const MetadataReader& in) override;
  // max_exp_avg_sq is optional: a run that switches amsgrad on starts its running maximum at zero.
  std::vector<std::string> state_names() const override { return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}; }
  std::vector<std::string> required_state_names() const override { return {"exp_avg", "exp_avg_sq"}; }
  bool counts_steps() const override { return true; }

 private:
  std::vector<AdamOptions> options_;  // per group
  bool decoupled_;
};

class AdamW : public Adam {
 public:
  AdamW(ParamList params, AdamWOptions options);
  explicit AdamW(std::vector<AdamWGroup> groups);
};

}  // namespace mg::nn
