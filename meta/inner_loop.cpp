#include "inner_loop.h"

#include <cmath>
#include <memory>
#include <optional>
#include <utility>

#include "../autograd/checkpoint.h"
#include "../autograd/grad.h"
#include "../autograd/grad_mode.h"
#include "../autograd/ops.h"
#include "../nn/attention.h"
#include "../nn/batch_norm2d.h"
#include "../nn/dropout.h"

namespace mg::meta {

bool adapts(const InnerLoopOptions& options, const std::string& name) {
  if (options.adapt_prefixes.empty()) return true;
  for (const std::string& prefix : options.adapt_prefixes)
    if (name.compare(0, prefix.size(), prefix) == 0) return true;
  return false;
}

nn::TensorDict make_learned_lrs(const nn::TensorDict& params, const InnerLoopOptions& options) {
  MG_CHECK(options.learned_lr != LearnedLr::None, "make_learned_lrs: options.learned_lr is None");
  nn::TensorDict lrs;
  for (const auto& [name, p] : params) {
    if (!adapts(options, name)) continue;
    Shape shape = options.learned_lr == LearnedLr::PerElement ? p.shape() : Shape{options.steps};
    lrs.insert(name, full(shape, options.lr, p.dtype(), p.device()).requires_grad_());
  }
  return lrs;
}

namespace {

// ----------------------------------------------------------------------------- one inner step

// Per adapted tensor: Momentum's velocity in first; Adam's moments in first and second.
struct OptimizerState {
  TensorList first, second;
};

OptimizerState initial_state(const InnerLoopOptions& options, const TensorList& adapted) {
  OptimizerState state;
  if (options.optimizer == InnerOptimizer::Sgd) return state;
  for (const Tensor& p : adapted) state.first.push_back(zeros_like(p));
  if (options.optimizer == InnerOptimizer::Adam)
    for (const Tensor& p : adapted) state.second.push_back(zeros_like(p));
  return state;
}

// The update direction for adapted tensor i (inner_loop.h has the formulas), advancing its state.
Tensor direction(const InnerLoopOptions& options, int step, const Tensor& g, OptimizerState& state, std::size_t i) {
  switch (options.optimizer) {
    case InnerOptimizer::Sgd:
      return g;
    case InnerOptimizer::Momentum:
      state.first[i] = state.first[i] * options.momentum + g;
      return state.first[i];
    case InnerOptimizer::Adam: {
      state.first[i] = state.first[i] * options.beta1 + g * (1.0 - options.beta1);
      state.second[i] = state.second[i] * options.beta2 + square(g) * (1.0 - options.beta2);
      const double first_correction = 1.0 - std::pow(options.beta1, step + 1);
      const double second_correction = 1.0 - std::pow(options.beta2, step + 1);
      return (state.first[i] / first_correction) /
             sqrt(state.second[i] / second_correction + options.eps * options.eps);
    }
  }
  MG_FAIL("adapt: unknown inner optimizer");
}

struct StepInputs {
  nn::TensorDict params;  // every parameter; the adapted ones require grad
  TensorList adapted;     // params' adapted entries, in the order of the names
  OptimizerState state;
  TensorList rates;  // the learned rate of each adapted tensor; empty for the fixed rate
};

struct StepOutputs {
  TensorList adapted;
  OptimizerState state;
  Tensor support_loss;  // detached
};

// create_graph: record the inner gradient (second order). record_update: record the update that
// follows it (off only when a checkpointed step first runs, when nothing is recorded).
StepOutputs inner_step(nn::Module& model, const StepInputs& in, const Tensor& support_x, const Tensor& support_y,
                       const LossFn& loss, const InnerLoopOptions& options, int step, bool create_graph,
                       bool record_update) {
  model.set_inner_step(step);
  Tensor support_loss = loss(model.forward(nn::Params(in.params), support_x), support_y);
  // Second order: the gradient carries its own graph, so the meta-gradient flows through it.
  TensorList grads =
      grad({support_loss}, in.adapted, {}, {.create_graph = create_graph, .retain_graph = false, .allow_unused = true});
  StepOutputs out{{}, in.state, support_loss.detach()};
  GradModeGuard mode(record_update);
  for (std::size_t i = 0; i < in.adapted.size(); ++i) {
    if (!grads[i].defined()) {
      out.adapted.push_back(in.adapted[i]);
      continue;
    }
    const Tensor g = create_graph ? grads[i] : grads[i].detach();
    const Tensor d = direction(options, step, g, out.state, i);
    if (in.rates.empty()) {
      out.adapted.push_back(sub_scaled(in.adapted[i], d, options.lr));
      continue;
    }
    const Tensor rate = options.learned_lr == LearnedLr::PerTensorPerStep ? in.rates[i].select(0, step) : in.rates[i];
    out.adapted.push_back(in.adapted[i] - rate * d);
  }
  return out;
}

// ------------------------------------------------------------------ model state for recomputation

// The parts of a model whose state a recomputed step must see as its first run saw it, or must
// leave as it found it.
struct ModelParts {
  explicit ModelParts(nn::Module& model) { collect(model); }
  std::vector<nn::Module*> modules;  // pre-order
  std::vector<Generator*> generators;
  std::vector<nn::BatchNorm2d*> batch_norms;

 private:
  void collect(nn::Module& m) {
    modules.push_back(&m);
    if (auto* dropout = dynamic_cast<nn::Dropout*>(&m)) generators.push_back(&dropout->generator());
    if (auto* attention = dynamic_cast<nn::MultiheadAttention*>(&m)) generators.push_back(&attention->generator());
    if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(&m)) batch_norms.push_back(bn);
    for (const auto& [name, child] : m.children()) collect(*child);
  }
};

struct Modes {
  std::vector<bool> training;
  std::vector<std::pair<uint64_t, uint64_t>> streams;  // generator (seed, offset)
};

Modes read_modes(const ModelParts& parts) {
  Modes modes;
  for (const nn::Module* m : parts.modules) modes.training.push_back(m->is_training());
  for (const Generator* g : parts.generators) modes.streams.emplace_back(g->seed(), g->offset());
  return modes;
}

void write_modes(const ModelParts& parts, const Modes& modes) {
  // train() recurses into children, so parents go first and children then override.
  if (read_modes(parts).training != modes.training)
    for (std::size_t i = 0; i < parts.modules.size(); ++i) parts.modules[i]->train(modes.training[i]);
  for (std::size_t i = 0; i < parts.generators.size(); ++i)
    parts.generators[i]->set_state(modes.streams[i].first, modes.streams[i].second);
}

// For the scope of a recomputation: the modes and random streams of the step's first run; then
// back to the current ones, with BatchNorm's steps and any buffer the recomputation updated
// (running statistics) restored, so that a step counts once.
class RecomputeScope {
 public:
  RecomputeScope(nn::Module& model, const ModelParts& parts, const Modes& first_run, int final_step)
      : model_(model), parts_(parts), modes_(read_modes(parts)), final_step_(final_step) {
    for (const nn::BatchNorm2d* bn : parts.batch_norms) bn_steps_.push_back(bn->inner_step());
    NoGradGuard no_grad;
    for (const auto& [name, b] : model.named_buffers()) {
      buffers_.push_back(b);
      copies_.push_back(b.clone());
      versions_.push_back(b.version());
    }
    write_modes(parts, first_run);
  }
  ~RecomputeScope() {
    // Every value restored here was valid before; nothing to report from a destructor.
    try {
      write_modes(parts_, modes_);
      model_.set_inner_step(final_step_);
      for (std::size_t i = 0; i < bn_steps_.size(); ++i) parts_.batch_norms[i]->set_inner_step(bn_steps_[i]);
      NoGradGuard no_grad;
      for (std::size_t i = 0; i < buffers_.size(); ++i)
        if (buffers_[i].version() != versions_[i]) buffers_[i].copy_(copies_[i]);
    } catch (...) {
    }
  }
  RecomputeScope(const RecomputeScope&) = delete;
  RecomputeScope& operator=(const RecomputeScope&) = delete;

 private:
  nn::Module& model_;
  const ModelParts& parts_;
  Modes modes_;
  int final_step_;
  std::vector<int> bn_steps_;
  TensorList buffers_, copies_;
  std::vector<uint64_t> versions_;
};

// ------------------------------------------------------------------------------------- the loops

struct LoopSetup {
  std::vector<std::string> names;  // adapted, in params' order
  TensorList rates;                // learned, one per name; empty for the fixed rate
};

LoopSetup setup(const nn::TensorDict& params, const InnerLoopOptions& options, const nn::TensorDict* learned_lrs) {
  MG_CHECK(options.steps >= 0, "adapt: inner steps must be >= 0, got ", options.steps);
  MG_CHECK(options.learned_lr == LearnedLr::None || learned_lrs != nullptr,
           "adapt: learned learning rates were asked for but none were given");
  MG_CHECK(options.momentum >= 0.0, "adapt: momentum must be >= 0, got ", options.momentum);
  MG_CHECK(options.beta1 >= 0.0 && options.beta1 < 1.0 && options.beta2 >= 0.0 && options.beta2 < 1.0,
           "adapt: Adam's betas must be in [0, 1), got ", options.beta1, " and ", options.beta2);
  MG_CHECK(options.eps > 0.0, "adapt: Adam's eps must be > 0, got ", options.eps);
  LoopSetup s;
  for (const auto& [name, p] : params) {
    if (!adapts(options, name)) continue;
    MG_CHECK(p.requires_grad(), "adapt: parameter '", name, "' does not require grad");
    s.names.push_back(name);
    if (options.learned_lr != LearnedLr::None) s.rates.push_back(learned_lrs->at(name));
  }
  MG_CHECK(!s.names.empty() || options.steps == 0, "adapt: no parameter matches the adapt prefixes");
  return s;
}

TensorList entries(const nn::TensorDict& params, const std::vector<std::string>& names) {
  TensorList out;
  for (const std::string& name : names) out.push_back(params.at(name));
  return out;
}

// A step's inputs as a checkpoint sees them: every parameter, the optimizer state, the rates, then
// the support set (which may carry a graph, e.g. features from meta-learned layers). The outputs:
// the adapted tensors, the state, then the support loss.
TensorList pack_inputs(const StepInputs& in, const Tensor& support_x, const Tensor& support_y) {
  TensorList out = in.params.values();
  for (const TensorList* part : {&in.state.first, &in.state.second, &in.rates})
    out.insert(out.end(), part->begin(), part->end());
  out.push_back(support_x);
  out.push_back(support_y);
  return out;
}

Adaptation adapt_checkpointed(nn::Module& model, const nn::TensorDict& params, const Tensor& support_x,
                              const Tensor& support_y, const LossFn& loss, const InnerLoopOptions& options,
                              const LoopSetup& setup, bool keep_history) {
  Adaptation result;
  result.params = params;
  auto parts = std::make_shared<const ModelParts>(model);
  const std::vector<std::string> keys = params.keys();
  const std::size_t k = setup.names.size();
  OptimizerState state = initial_state(options, entries(params, setup.names));
  const std::size_t first_slots = state.first.size(), second_slots = state.second.size();

  for (int step = 0; step < options.steps; ++step) {
    auto first_run = std::make_shared<Modes>();
    CheckpointFn fn = [&model, parts, first_run, keys, names = setup.names, loss, options, step, first_slots,
                       second_slots](const TensorList& packed) -> TensorList {
      const bool recompute = GradMode::is_enabled();  // off on the first run (see checkpoint.h)
      std::optional<RecomputeScope> scope;
      if (recompute)
        scope.emplace(model, *parts, *first_run, options.steps);
      else
        *first_run = read_modes(*parts);
      GradModeGuard recording(true);  // the inner gradient needs a graph either way
      StepInputs in;
      std::size_t at = 0;
      for (const std::string& key : keys) in.params.insert(key, packed[at++]);
      for (const std::string& name : names) {
        Tensor p = in.params.at(name);
        if (!p.requires_grad()) p = p.detach().requires_grad_();
        in.params.set(name, p);
        in.adapted.push_back(p);
      }
      in.state.first.assign(packed.begin() + at, packed.begin() + at + first_slots);
      at += first_slots;
      in.state.second.assign(packed.begin() + at, packed.begin() + at + second_slots);
      at += second_slots;
      in.rates.assign(packed.begin() + at, packed.end() - 2);
      StepOutputs out = inner_step(model, in, packed.end()[-2], packed.back(), loss, options, step,
                                   recompute && options.second_order, recompute);
      TensorList result = out.adapted;
      for (const TensorList* part : {&out.state.first, &out.state.second})
        result.insert(result.end(), part->begin(), part->end());
      result.push_back(out.support_loss);
      return result;
    };
    StepInputs in{result.params, entries(result.params, setup.names), state, setup.rates};
    TensorList out =
        checkpoint(fn, pack_inputs(in, support_x, support_y), {.name = "adapt: inner step " + std::to_string(step)});
    result.support_losses.push_back(out.back().detach());
    nn::TensorDict next = result.params;
    for (std::size_t i = 0; i < k; ++i) next.set(setup.names[i], out[i]);
    state.first.assign(out.begin() + k, out.begin() + k + first_slots);
    state.second.assign(out.begin() + k + first_slots, out.begin() + k + first_slots + second_slots);
    result.params = std::move(next);
    if (keep_history) result.history.push_back(result.params);
  }
  model.set_inner_step(options.steps);
  return result;
}

}  // namespace

Adaptation adapt(nn::Module& model, const nn::TensorDict& params, const Tensor& support_x, const Tensor& support_y,
                 const LossFn& loss, const InnerLoopOptions& options, const nn::TensorDict* learned_lrs,
                 bool keep_history) {
  const LoopSetup s = setup(params, options, learned_lrs);
  if (options.checkpoint)
    return adapt_checkpointed(model, params, support_x, support_y, loss, options, s, keep_history);

  Adaptation result;
  result.params = params;
  OptimizerState state = initial_state(options, entries(params, s.names));
  for (int step = 0; step < options.steps; ++step) {
    StepInputs in{result.params, entries(result.params, s.names), std::move(state), s.rates};
    StepOutputs out =
        inner_step(model, in, support_x, support_y, loss, options, step, options.second_order, GradMode::is_enabled());
    result.support_losses.push_back(out.support_loss.detach());
    nn::TensorDict next = result.params;
    for (std::size_t i = 0; i < s.names.size(); ++i) next.set(s.names[i], out.adapted[i]);
    state = std::move(out.state);
    result.params = std::move(next);
    if (keep_history) result.history.push_back(result.params);
  }
  model.set_inner_step(options.steps);
  return result;
}

}  // namespace mg::meta
