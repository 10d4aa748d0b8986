#include "sinusoid.h"

#include <cmath>
#include <string>
#include <tuple>
#include <utility>

#include "../autograd/ops.h"

namespace mg::meta {

namespace {

void check_range(const char* what, double low, double high) {
  MG_CHECK(std::isfinite(low) && std::isfinite(high) && low <= high, "sinusoid: ", what,
           " range needs finite min <= max, got [", low, ", ", high, "]");
}

// Amplitude then phase, one float64 uniform each: the first two counters of every task.
SinusoidFunction draw_function(const SinusoidOptions& o, Generator& gen) {
  SinusoidFunction f;
  f.amplitude = uniform({1}, o.amplitude_min, o.amplitude_max, kFloat64, kCPU, &gen).item<double>();
  f.phase = uniform({1}, o.phase_min, o.phase_max, kFloat64, kCPU, &gen).item<double>();
  return f;
}

// x ~ U[x_min, x_max) as [n, 1] in the task's dtype; y computed in double from the rounded x, so
// y is the true function at exactly the x the model sees.
std::pair<Tensor, Tensor> draw_points(const SinusoidOptions& o, const SinusoidFunction& f, int64_t n, Generator& gen) {
  Tensor x = uniform({n, 1}, o.x_min, o.x_max, o.dtype, kCPU, &gen);
  Tensor y = Tensor::empty({n, 1}, o.dtype);
  if (n == 0) return {x, y};
  dispatch_floating(o.dtype, "sinusoid", [&]<typename T>() {
    const T* xs = x.data_ptr<T>();
    T* ys = y.data_ptr<T>();
    for (int64_t i = 0; i < n; ++i) ys[i] = static_cast<T>(f(static_cast<double>(xs[i])));
  });
  return {x, y};
}

}  // namespace

double SinusoidFunction::operator()(double x) const { return amplitude * std::sin(x - phase); }

Tensor SinusoidFunction::operator()(const Tensor& x) const {
  MG_CHECK(x.defined() && is_floating(x.dtype()), "SinusoidFunction: x must be a floating tensor, got ",
           x.defined() ? describe(x) : std::string("an undefined tensor"));
  return sin(x - phase) * amplitude;
}

SinusoidSampler::SinusoidSampler(SinusoidOptions options, uint64_t seed) : TaskSampler(seed), options_(options) {
  MG_CHECK(options_.shots >= 0 && options_.queries >= 0 && options_.shots + options_.queries > 0,
           "sinusoid: shots (", options_.shots, ") and queries (", options_.queries,
           ") must be non-negative and not both zero");
  MG_CHECK(is_floating(options_.dtype), "sinusoid: dtype must be float32 or float64, got ", options_.dtype);
  check_range("amplitude", options_.amplitude_min, options_.amplitude_max);
  check_range("phase", options_.phase_min, options_.phase_max);
  check_range("x", options_.x_min, options_.x_max);
}

Task SinusoidSampler::sample(Generator& gen) const {
  SinusoidFunction unused;
  return sample(gen, unused);
}

Task SinusoidSampler::sample(Generator& gen, SinusoidFunction& function) const {
  function = draw_function(options_, gen);
  Task task;
  std::tie(task.support_x, task.support_y) = draw_points(options_, function, options_.shots, gen);
  std::tie(task.query_x, task.query_y) = draw_points(options_, function, options_.queries, gen);
  return task;
}

SinusoidFunction SinusoidSampler::function(uint64_t index) const {
  MG_CHECK(index < kCountersPerTask, "SinusoidSampler::function: index ", index,
           " is beyond the 2^32 tasks of a stream");
  Generator gen(seed());
  gen.set_state(seed(), index * kCountersPerTask);
  return draw_function(options_, gen);
}

}  // namespace mg::meta
