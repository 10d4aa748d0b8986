#pragma once
#include "../tensor/creation.h"
#include "module.h"

namespace mg::nn {

// Zeroes elements with probability p and scales the rest by 1 / (1 - p) in training mode; the
// identity in eval mode. Each module owns its mask generator, seeded once from gen (or from
// default_generator()) at construction, so runs repeat exactly and no pointer must outlive it.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, Generator* gen = nullptr);
  std::string type_name() const override { return "Dropout"; }
  using Module::forward;
  Tensor forward(const Params& params, const Tensor& x) override;

  double p() const { return p_; }
  bool concurrent_forward() const override { return (p_ == 0.0 || !is_training()) && Module::concurrent_forward(); }
  Generator& generator() { return generator_; }

 private:
  double p_;
  Generator generator_;
};

// A seed for a module's own generator, drawn from gen (default_generator() when null).
uint64_t draw_seed(Generator* gen);

}  // namespace mg::nn
