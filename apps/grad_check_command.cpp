// The meta-gradient check a user can run: MAML's exact second-order meta-gradient through several
// inner steps, against central finite differences of the post-adaptation query loss, in float64.
#include <algorithm>
#include <cmath>
#include <iomanip>
#include <iostream>

#include "../autograd/grad.h"
#include "../autograd/ops.h"
#include "../meta/class_split.h"
#include "../meta/maml.h"
#include "../meta/models.h"
#include "../nn/losses.h"
#include "../tensor/creation.h"
#include "../tensor/error.h"
#include "commands.h"
#include "run_spec.h"

namespace mg::app {

namespace {

struct Problem {
  std::shared_ptr<nn::Module> model;
  meta::Task task;
  meta::LossFn loss;
};

// Small float64 versions of the named models on random tasks of the right shapes.
Problem make_problem(const std::string& name, int64_t hidden, Generator& gen) {
  Problem p;
  meta::ModelSpec spec;
  spec.name = name;
  auto ce = [](const Tensor& out, const Tensor& y) { return nn::cross_entropy(out, y); };
  if (name == "mlp") {
    spec.hidden = hidden > 0 ? hidden : 16;
    p.model = meta::make_model(spec, &gen);
    const Tensor x = uniform({20, 1}, -5, 5, kFloat64, kCPU, &gen);
    const Tensor y = sin(x) * 2.0;
    p.task = {narrow(x, 0, 0, 10), narrow(y, 0, 0, 10), narrow(x, 0, 10, 10), narrow(y, 0, 10, 10), {}};
    p.loss = [](const Tensor& out, const Tensor& y) { return nn::mse_loss(out, y); };
  } else if (name == "transformer") {
    spec.hidden = hidden > 0 ? hidden : 16;
    spec.outputs = 3;
    spec.seq_len = 6;
    p.model = meta::make_model(spec, &gen);
    // Words of 3..6 bytes, padded with 0 to 6.
    auto words = [&gen](int64_t n) {
      Tensor t = randint(1, 256, {n, 6}, kCPU, &gen);
      std::vector<int64_t> v = t.to_vector<int64_t>();
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 3 + i % 4; j < 6; ++j) v[static_cast<std::size_t>(i * 6 + j)] = 0;
      return tensor(v, {n, 6});
    };
    p.task = {words(6),
              tensor(std::vector<int64_t>{0, 1, 2, 0, 1, 2}, {6}),
              words(6),
              tensor(std::vector<int64_t>{2, 1, 0, 2, 1, 0}, {6}),
              {}};
    p.loss = ce;
  } else if (name == "conv4") {
    spec.hidden = hidden > 0 ? hidden : 4;
    spec.layers = 2;
    spec.image_size = 8;
    spec.outputs = 3;
    p.model = meta::make_model(spec, &gen);
    p.task = {rand({6, 1, 8, 8}, kFloat64, kCPU, &gen),
              tensor(std::vector<int64_t>{0, 1, 2, 0, 1, 2}, {6}),
              rand({6, 1, 8, 8}, kFloat64, kCPU, &gen),
              tensor(std::vector<int64_t>{2, 1, 0, 2, 1, 0}, {6}),
              {}};
    p.loss = ce;
  } else {
    MG_FAIL("unknown model '", name, "' (known: mlp, conv4, transformer)");
  }
  p.model->to(kFloat64);
  return p;
}

nn::TensorDict fresh_leaves(const nn::TensorDict& params) {
  return params.map([](const Tensor& p) { return p.detach().clone().requires_grad_(); });
}

}  // namespace

int grad_check_command(const std::vector<std::string>& args) {
  const std::vector<FlagSpec> specs{
      {"model", "mlp | conv4 | transformer (default mlp), a small float64 instance", false, "NAME"},
      {"hidden", "model width (default: mlp 16, conv4 4, transformer 16)", false, "N"},
      {"inner-steps", "inner SGD steps to differentiate through (default 3)", false, "N"},
      {"inner-lr", "inner learning rate (default 0.1)", false, "LR"},
      {"entries", "parameter entries to check by finite differences (default 24)", false, "N"},
      {"epsilon", "finite-difference step (default 1e-6)", false, "H"},
      {"tolerance", "largest accepted error relative to the gradient's size (default 1e-6)", false, "X"},
      {"seed", "model and task seed (default 0)", false, "N"},
      {"help", "this list", true},
  };
  const Arguments a(args, specs, "grad-check");
  if (a.flag("help")) {
    std::cout << "usage: metagrad grad-check [--model NAME] [--inner-steps N] ...\n\n" << usage_lines(specs);
    return 0;
  }
  const std::string name = a.text("model", "mlp");
  Generator gen(static_cast<uint64_t>(a.integer("seed", 0, 0)));
  Problem problem = make_problem(name, a.integer("hidden", 0, 1), gen);
  meta::MamlOptions options;
  options.inner.steps = static_cast<int>(a.integer("inner-steps", 3, 1));
  options.inner.lr = a.real("inner-lr", 0.1);
  const int64_t entries = a.integer("entries", 24, 1);
  const double eps = a.real("epsilon", 1e-6);
  const double tolerance = a.real("tolerance", 1e-6);

  const nn::TensorDict params = fresh_leaves(problem.model->named_parameters());
  auto query_loss = [&](const nn::TensorDict& p, bool second_order) {
    meta::MamlOptions o = options;
    o.inner.second_order = second_order;
    return meta::maml_task_loss(*problem.model, p, problem.task, problem.loss, o).query_loss;
  };
  const TensorList exact = grad({query_loss(params, true)}, params.values());
  const TensorList first_order = grad({query_loss(params, false)}, params.values(), {}, {.allow_unused = true});

  // Entries spread over every parameter tensor, chosen by the seed.
  struct Probe {
    std::string name;
    int64_t index;
    double exact, first_order, numeric;
  };
  std::vector<Probe> probes;
  const std::vector<std::string> names = params.keys();
  const int64_t per_tensor =
      std::max<int64_t>(1, (entries + static_cast<int64_t>(names.size()) - 1) / static_cast<int64_t>(names.size()));
  for (std::size_t i = 0; i < names.size() && static_cast<int64_t>(probes.size()) < entries; ++i) {
    const int64_t n = params.at(names[i]).numel();
    const std::vector<double> e = exact[i].to_vector();
    const std::vector<double> f =
        first_order[i].defined() ? first_order[i].to_vector() : std::vector<double>(static_cast<std::size_t>(n), 0.0);
    for (int64_t index : meta::sample_indices(n, std::min(per_tensor, n), gen)) {
      auto at = [&](double delta) {
        nn::TensorDict moved = fresh_leaves(params);
        moved.at(names[i]).detach().reshape({-1}).narrow(0, index, 1).add_(delta);
        return query_loss(moved, true).item();
      };
      const double numeric = (at(eps) - at(-eps)) / (2 * eps);
      probes.push_back(
          {names[i], index, e[static_cast<std::size_t>(index)], f[static_cast<std::size_t>(index)], numeric});
    }
  }
  double scale = 0, worst = 0, first_order_gap = 0;
  for (const Probe& p : probes) scale = std::max(scale, std::abs(p.numeric));
  std::cout << "MAML meta-gradient, " << name << " (float64), " << options.inner.steps << " inner SGD steps, lr "
            << options.inner.lr << ": exact second order vs central differences (h = " << eps << ")\n\n";
  std::cout << std::left << std::setw(34) << "parameter[entry]" << std::right << std::setw(16) << "exact"
            << std::setw(16) << "finite diff" << std::setw(12) << "rel. error" << std::setw(16) << "first order\n";
  for (const Probe& p : probes) {
    const double err = std::abs(p.exact - p.numeric) / std::max(scale, 1e-300);
    worst = std::max(worst, err);
    first_order_gap = std::max(first_order_gap, std::abs(p.first_order - p.numeric) / std::max(scale, 1e-300));
    std::cout << std::left << std::setw(34) << (p.name + "[" + std::to_string(p.index) + "]") << std::right
              << std::scientific << std::setprecision(6) << std::setw(16) << p.exact << std::setw(16) << p.numeric
              << std::setprecision(1) << std::setw(12) << err << std::setprecision(6) << std::setw(16) << p.first_order
              << "\n";
  }
  std::cout << std::defaultfloat << "\n"
            << probes.size() << " entries; largest error relative to the largest gradient entry: " << worst
            << " (tolerance " << tolerance << ")\n"
            << "first-order MAML differs from the finite differences by up to " << first_order_gap
            << ": the second-order terms are " << (first_order_gap > 100 * std::max(worst, 1e-12) ? "real and" : "")
            << " included.\n";
  const bool ok = worst <= tolerance && std::isfinite(worst);
  std::cout << (ok ? "PASS" : "FAIL") << "\n";
  return ok ? 0 : kExitFailure;
}

}  // namespace mg::app
