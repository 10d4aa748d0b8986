// Checkpointed inner loops (InnerLoopOptions::checkpoint): the same meta-gradients as the stored
// unrolled loop, for every member of the MAML family and with stateful layers, at a fraction of
// the peak memory.
#include <doctest/doctest.h>

#include <map>
#include <vector>

#include "../autograd/grad.h"
#include "../autograd/ops.h"
#include "../meta/maml.h"
#include "../nn/batch_norm2d.h"
#include "../nn/conv2d.h"
#include "../nn/dropout.h"
#include "../nn/flatten.h"
#include "../nn/linear.h"
#include "../nn/losses.h"
#include "../nn/mlp.h"
#include "../nn/sequential.h"
#include "../nn/transformer.h"
#include "../tensor/memory_stats.h"
#include "check_error.h"
#include "meta_test_util.h"

using namespace mg;
using namespace mg::testing;
using mg::nn::TensorDict;

namespace {

Tensor mse(const Tensor& out, const Tensor& y) { return nn::mse_loss(out, y); }

std::shared_ptr<nn::Sequential> tanh_mlp(std::vector<int64_t> sizes, uint64_t seed) {
  Generator gen(seed);
  auto model = nn::make_mlp({.sizes = std::move(sizes), .activation = nn::functional::Activation::Tanh}, &gen);
  model->to(kFloat64);
  return model;
}

// The meta-gradient with respect to params (and learned rates, when given), flattened.
std::vector<double> meta_gradient(nn::Module& model, const TensorDict& params, const meta::Task& task,
                                  const meta::MamlOptions& options, const TensorDict* lrs = nullptr) {
  Tensor loss = meta::maml_task_loss(model, params, task, mse, options, lrs).query_loss;
  TensorList wrt = params.values();
  if (lrs) {
    TensorList rates = lrs->values();
    wrt.insert(wrt.end(), rates.begin(), rates.end());
  }
  return flatten(grad({loss}, wrt));
}

// The meta-gradient with and without checkpointing, from the same parameters.
double checkpoint_error(nn::Module& model, const meta::Task& task, meta::MamlOptions options) {
  TensorDict params = fresh_leaves(model.named_parameters());
  TensorDict lrs;
  if (options.inner.learned_lr != meta::LearnedLr::None) lrs = meta::make_learned_lrs(params, options.inner);
  const TensorDict* rates = lrs.empty() ? nullptr : &lrs;
  options.inner.checkpoint = false;
  const std::vector<double> stored = meta_gradient(model, params, task, options, rates);
  options.inner.checkpoint = true;
  const std::vector<double> recomputed = meta_gradient(model, params, task, options, rates);
  CHECK(all_finite(stored));
  return max_relative_error(recomputed, stored);
}

// Peak bytes allocated during one second-order meta-step (the task loss and its gradient),
// beyond what was allocated before it.
int64_t meta_step_peak_bytes(int steps, bool checkpoint) {
  Generator gen(40);
  auto model = nn::make_mlp({.sizes = {1, 256, 256, 1}, .activation = nn::functional::Activation::ReLU}, &gen);
  meta::Task task;
  task.support_x = uniform({200, 1}, -5.0, 5.0, kFloat32, kCPU, &gen);
  task.support_y = sin(task.support_x);
  task.query_x = uniform({200, 1}, -5.0, 5.0, kFloat32, kCPU, &gen);
  task.query_y = sin(task.query_x);
  TensorDict params = model->named_parameters();
  meta::MamlOptions options;
  options.inner = {.steps = steps, .lr = 0.01, .checkpoint = checkpoint};
  const int64_t base = memory_stats().allocated;
  reset_peak_memory_stats();
  {
    Tensor loss = meta::maml_task_loss(*model, params, task, mse, options).query_loss;
    TensorList g = grad({loss}, params.values());
  }
  return memory_stats().peak_allocated - base;
}

// Draws from a generator of its own that adapt() does not know about.
class NoisyScale : public nn::Module {
 public:
  NoisyScale() : gen_(3) {}
  std::string type_name() const override { return "NoisyScale"; }
  using nn::Module::forward;
  Tensor forward(const nn::Params&, const Tensor& x) override {
    return x * uniform(x.shape(), 0.9, 1.1, x.dtype(), x.device(), &gen_);
  }

 private:
  Generator gen_;
};

// conv -> per-step BatchNorm -> relu -> linear, on 1x5x5 images.
std::shared_ptr<nn::Sequential> conv_bn_model(int steps) {
  Generator gen(31);
  auto model = std::make_shared<nn::Sequential>();
  model->push_back(std::make_shared<nn::Conv2d>(1, 3, 3, 1, 1, true, &gen));
  model->push_back(std::make_shared<nn::BatchNorm2d>(
      3, nn::BatchNorm2dOptions{.mode = nn::BatchNormMode::PerStep, .num_steps = steps + 1}));
  model->push_back(std::make_shared<nn::Flatten>());
  model->push_back(std::make_shared<nn::Linear>(3 * 5 * 5, 1, true, &gen));
  model->to(kFloat64);
  return model;
}

meta::Task image_task(uint64_t seed) {
  Generator gen(seed);
  meta::Task t;
  t.support_x = randn({6, 1, 5, 5}, kFloat64, kCPU, &gen);
  t.support_y = randn({6, 1}, kFloat64, kCPU, &gen);
  t.query_x = randn({6, 1, 5, 5}, kFloat64, kCPU, &gen);
  t.query_y = randn({6, 1}, kFloat64, kCPU, &gen);
  return t;
}

}  // namespace

TEST_SUITE("meta.memory") {
  TEST_CASE("checkpointed MAML gives the stored loop's meta-gradient") {
    auto model = tanh_mlp({2, 16, 16, 1}, 1);
    const meta::Task task = regression_task(2, 2, 8);
    for (int steps : {3, 5}) {
      meta::MamlOptions options;
      options.inner = {.steps = steps, .lr = 0.1};
      const double err = checkpoint_error(*model, task, options);
      MESSAGE("MAML ", steps, " steps: checkpointed vs stored, max relative difference ", err);
      CHECK(err < 1e-12);
    }
  }

  TEST_CASE("checkpointing keeps Meta-SGD, MAML++, first-order MAML and ANIL exact") {
    auto model = tanh_mlp({2, 8, 8, 1}, 3);
    const meta::Task task = regression_task(4, 2, 7);
    meta::MamlOptions options;
    SUBCASE("Meta-SGD: per-element rates are inputs of each step and get their gradients") {
      options.inner = {.steps = 3, .lr = 0.05, .learned_lr = meta::LearnedLr::PerElement};
    }
    SUBCASE("MAML++: per-step rates and the multi-step loss") {
      options.inner = {.steps = 4, .lr = 0.05, .learned_lr = meta::LearnedLr::PerTensorPerStep};
      options.multi_step_weights = meta::multi_step_loss_weights(4, 10, 100);
    }
    SUBCASE("first-order MAML") { options.inner = {.steps = 3, .lr = 0.1, .second_order = false}; }
    SUBCASE("ANIL: the frozen body's gradient flows through the head's inner gradients") {
      options.inner = {.steps = 3, .lr = 0.1, .adapt_prefixes = {"4."}};
    }
    SUBCASE("inner Momentum") { options.inner = {.steps = 3, .lr = 0.05, .optimizer = meta::InnerOptimizer::Momentum}; }
    SUBCASE("inner Adam with per-step rates") {
      options.inner = {.steps = 3,
                       .lr = 0.01,
                       .learned_lr = meta::LearnedLr::PerTensorPerStep,
                       .optimizer = meta::InnerOptimizer::Adam};
    }
    CHECK(checkpoint_error(*model, task, options) < 1e-12);
  }

  TEST_CASE("a support set computed by meta-learned layers gets its gradient through checkpointed steps") {
    auto head = tanh_mlp({3, 4, 1}, 5);
    const meta::Task raw = regression_task(6, 2, 6);
    Generator gen(7);
    Tensor body = randn({2, 3}, kFloat64, kCPU, &gen).requires_grad_();
    meta::Task task = raw;
    task.support_x = tanh(matmul(raw.support_x, body));
    task.query_x = tanh(matmul(raw.query_x, body));
    TensorDict params = fresh_leaves(head->named_parameters());
    auto gradient = [&](bool checkpoint) {
      meta::MamlOptions options;
      options.inner = {.steps = 3, .lr = 0.1, .checkpoint = checkpoint};
      TensorList wrt = params.values();
      wrt.push_back(body);
      Tensor loss = meta::maml_task_loss(*head, params, task, mse, options).query_loss;
      return flatten(grad({loss}, wrt, {}, {.retain_graph = true}));
    };
    CHECK(max_relative_error(gradient(true), gradient(false)) < 1e-12);
  }

  TEST_CASE("per-step BatchNorm: the same meta-gradient, and each step's statistics updated once") {
    const int steps = 3;
    auto stored = conv_bn_model(steps);
    auto checkpointed = conv_bn_model(steps);
    const meta::Task task = image_task(32);
    meta::MamlOptions options;
    options.inner = {.steps = steps, .lr = 0.1};
    TensorDict params = fresh_leaves(stored->named_parameters());
    const std::vector<double> want = meta_gradient(*stored, params, task, options);
    options.inner.checkpoint = true;
    const std::vector<double> got = meta_gradient(*checkpointed, params, task, options);
    CHECK(max_relative_error(got, want) < 1e-12);
    const TensorDict a = stored->named_buffers(), b = checkpointed->named_buffers();
    for (const auto& [name, buffer] : a) {
      INFO(name);
      CHECK(max_relative_error(b.at(name).to_vector(), buffer.to_vector()) == 0.0);
    }
    auto* bn = dynamic_cast<nn::BatchNorm2d*>((*checkpointed)[1].get());
    REQUIRE(bn);
    CHECK(bn->inner_step() == steps);  // as adapt() left it, not the step recomputed last
    CHECK(b.at("1.num_batches_tracked").to_vector() == std::vector<double>{1, 1, 1, 1});
  }

  TEST_CASE("a transformer layer (LayerNorm, attention's softmax, cross-entropy) through checkpointed steps") {
    // Each fused op's first-order backward and its recorded one must give the same bits: a
    // checkpointed step runs the first without a graph and recomputes with one.
    for (bool norm_first : {false, true}) {
      INFO("norm_first = ", norm_first);
      Generator gen(60);
      auto model = std::make_shared<nn::Sequential>();
      model->push_back(std::make_shared<nn::TransformerEncoderLayer>(
          nn::TransformerLayerOptions{
              .d_model = 4, .nhead = 2, .dim_feedforward = 8, .dropout = 0.0, .norm_first = norm_first},
          &gen));
      model->push_back(std::make_shared<nn::Flatten>());
      model->push_back(std::make_shared<nn::Linear>(3 * 4, 3, true, &gen));
      model->to(kFloat64);
      meta::Task task;
      task.support_x = randn({6, 3, 4}, kFloat64, kCPU, &gen);
      task.support_y = tensor(std::vector<int64_t>{0, 1, 2, 0, 1, 2}, {6});
      task.query_x = randn({6, 3, 4}, kFloat64, kCPU, &gen);
      task.query_y = tensor(std::vector<int64_t>{2, 1, 0, 2, 1, 0}, {6});
      meta::MamlOptions options;
      options.inner = {.steps = 3, .lr = 0.3};
      TensorDict params = fresh_leaves(model->named_parameters());
      auto ce = [](const Tensor& logits, const Tensor& y) { return nn::cross_entropy(logits, y); };
      auto meta_grad = [&] {
        Tensor loss = meta::maml_task_loss(*model, params, task, ce, options).query_loss;
        return flatten(grad({loss}, params.values()));
      };
      const std::vector<double> want = meta_grad();
      options.inner.checkpoint = true;
      const std::vector<double> got = meta_grad();
      CHECK(all_finite(want));
      CHECK(max_relative_error(got, want) < 1e-12);
    }
  }

  TEST_CASE("Dropout in the inner loop: recomputed steps replay the forward's masks") {
    auto make = [] {
      Generator gen(50);
      auto model =
          nn::make_mlp({.sizes = {2, 16, 16, 1}, .activation = nn::functional::Activation::Tanh, .dropout = 0.3}, &gen);
      model->to(kFloat64);
      return model;
    };
    auto stored = make();
    auto checkpointed = make();
    const meta::Task task = regression_task(51, 2, 8);
    meta::MamlOptions options;
    options.inner = {.steps = 3, .lr = 0.1};
    TensorDict params = fresh_leaves(stored->named_parameters());
    const std::vector<double> want = meta_gradient(*stored, params, task, options);
    options.inner.checkpoint = true;
    const std::vector<double> got = meta_gradient(*checkpointed, params, task, options);
    CHECK(max_relative_error(got, want) < 1e-12);
    auto* d1 = dynamic_cast<nn::Dropout*>((*stored)[2].get());
    auto* d2 = dynamic_cast<nn::Dropout*>((*checkpointed)[2].get());
    REQUIRE((d1 && d2));
    CHECK(d1->generator().offset() > 0);
    CHECK(d1->generator().offset() == d2->generator().offset());  // the replay did not advance the stream
  }

  TEST_CASE("randomness adapt() cannot replay is an error naming the step") {
    nn::Sequential model;
    Generator gen(60);
    model.push_back(std::make_shared<nn::Linear>(2, 4, true, &gen));
    model.push_back(std::make_shared<NoisyScale>());
    model.push_back(std::make_shared<nn::Linear>(4, 1, true, &gen));
    model.to(kFloat64);
    const meta::Task task = regression_task(61, 2, 5);
    meta::MamlOptions options;
    options.inner = {.steps = 3, .lr = 0.1, .checkpoint = true};
    TensorDict params = fresh_leaves(model.named_parameters());
    Tensor loss = meta::maml_task_loss(model, params, task, mse, options).query_loss;
    CHECK_MG_ERROR(grad({loss}, params.values()), "adapt: inner step 2", "not deterministic");
  }

  TEST_CASE("differentiating the checkpointed meta-gradient again (create_graph) is exact") {
    auto model = tanh_mlp({2, 4, 1}, 70);
    const meta::Task task = regression_task(71, 2, 5);
    TensorDict params = fresh_leaves(model->named_parameters());
    Generator gen(72);
    TensorList v;
    for (const Tensor& p : params.values()) v.push_back(randn(p.shape(), kFloat64, kCPU, &gen));
    auto hessian_vector = [&](bool checkpoint) {
      meta::MamlOptions options;
      options.inner = {.steps = 2, .lr = 0.1, .checkpoint = checkpoint};
      return flatten(hvp(
          [&](const TensorList& values) {
            TensorDict p;
            std::size_t i = 0;
            for (const auto& [name, t] : params) p.insert(name, values[i++]);
            return meta::maml_task_loss(*model, p, task, mse, options).query_loss;
          },
          params.values(), v));
    };
    CHECK(max_relative_error(hessian_vector(true), hessian_vector(false)) < 1e-12);
  }

  TEST_CASE("peak memory of a second-order meta-step: grows with inner steps, bounded with checkpointing") {
    std::map<int, int64_t> stored, checkpointed;
    for (int steps : {1, 5, 10}) {
      stored[steps] = meta_step_peak_bytes(steps, false);
      checkpointed[steps] = meta_step_peak_bytes(steps, true);
      MESSAGE("MLP 1-256-256-1, 200 support points, ", steps, " inner steps: peak ", stored[steps] / 1024,
              " KiB stored, ", checkpointed[steps] / 1024, " KiB checkpointed (",
              100 * checkpointed[steps] / stored[steps], "%)");
    }
    CHECK(stored[5] > stored[1] * 3);
    CHECK(stored[10] > stored[5] * 3 / 2);
    CHECK(checkpointed[10] < stored[10] * 6 / 10);
    CHECK(checkpointed[10] < stored[10] / 3);
    // What grows with checkpointing is one set of fast weights per step.
    CHECK(checkpointed[10] - checkpointed[1] < (stored[10] - stored[1]) / 5);
  }
}
