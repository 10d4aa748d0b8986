#pragma once
// Sinusoid regression as in Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning" (ICML 2017):
// a task is y = A sin(x - phase) with A ~ U[0.1, 5.0], phase ~ U[0, pi], and its K support and
// Q query points have x ~ U[-5, 5].
#include <cstdint>
#include <numbers>

#include "../tensor/creation.h"
#include "task.h"

namespace mg::meta {

struct SinusoidOptions {
  int64_t shots = 10;    // K support points
  int64_t queries = 10;  // Q query points
  double amplitude_min = 0.1;
  double amplitude_max = 5.0;
  double phase_min = 0.0;
  double phase_max = std::numbers::pi;
  double x_min = -5.0;
  double x_max = 5.0;
  DType dtype = kFloat32;  // float32 or float64
};

// A task's true function, for plotting and evaluation.
struct SinusoidFunction {
  double amplitude = 1.0;
  double phase = 0.0;

  double operator()(double x) const;
  // Elementwise on a floating tensor, in its dtype.
  Tensor operator()(const Tensor& x) const;
};

// Tasks: support_x, support_y [K, 1] and query_x, query_y [Q, 1] in options.dtype.
class SinusoidSampler : public TaskSampler {
 public:
  explicit SinusoidSampler(SinusoidOptions options = {}, uint64_t seed = 0);

  Task sample(Generator& gen) const override;
  // The same draw, also reporting the function behind it.
  Task sample(Generator& gen, SinusoidFunction& function) const;
  // The function behind task(index) of the seeded stream.
  SinusoidFunction function(uint64_t index) const;

  const SinusoidOptions& options() const { return options_; }

 private:
  SinusoidOptions options_;
};

}  // namespace mg::meta
