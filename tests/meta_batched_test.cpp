// Task-batched meta-batches (meta/task_batched.h) against the loop over tasks: every layer's
// forward with per-task weights equals its per-task forwards, and the meta-gradient of the three
// model families (sinusoid MLP, conv4 with BatchNorm, transformer classifier) equals the mean of
// maml_task_loss over the tasks, for MAML, first-order MAML, Meta-SGD, MAML++ and ANIL.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../autograd/grad.h"
#include "../autograd/gradcheck.h"
#include "../autograd/ops.h"
#include "../meta/maml.h"
#include "../meta/models.h"
#include "../meta/sinusoid.h"
#include "../meta/task_batched.h"
#include "../nn/attention.h"
#include "../nn/batch_norm2d.h"
#include "../nn/conv2d.h"
#include "../nn/embedding.h"
#include "../nn/functional.h"
#include "../nn/functional_conv.h"
#include "../nn/layer_norm.h"
#include "../nn/linear.h"
#include "../nn/losses.h"
#include "../nn/max_pool2d.h"
#include "../nn/transformer.h"
#include "check_error.h"

using namespace mg;
using mg::nn::TensorDict;

namespace {

Tensor mse(const Tensor& out, const Tensor& y) { return nn::mse_loss(out, y); }
Tensor ce(const Tensor& logits, const Tensor& y) { return nn::cross_entropy(logits, y); }

TensorDict fresh_leaves(const TensorDict& params) {
  return params.map([](const Tensor& p) { return p.detach().clone().requires_grad_(); });
}

std::vector<double> flatten(const TensorList& tensors) {
  std::vector<double> out;
  for (const Tensor& t : tensors)
    for (double v : t.to_vector()) out.push_back(v);
  return out;
}

// max |a - b| over max |b|: relative to the size of the gradient, not of each element (an element
// near zero has no relative accuracy to speak of).
double relative_error(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double scale = 0, worst = 0;
  for (double v : b) scale = std::max(scale, std::abs(v));
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst / std::max(scale, 1e-30);
}

// T parameter sets of the module's shapes, each its own random perturbation of the module's.
std::vector<TensorDict> task_params(const nn::Module& layer, int64_t tasks, uint64_t seed) {
  Generator gen(seed);
  std::vector<TensorDict> out;
  for (int64_t t = 0; t < tasks; ++t)
    out.push_back(layer.named_parameters().map([&](const Tensor& p) {
      return (p.detach() + randn(p.shape(), p.dtype(), kCPU, &gen) * 0.3).requires_grad_();
    }));
  return out;
}

// The per-task sets stacked along a new leading task dim.
TensorDict stacked(const std::vector<TensorDict>& sets) {
  TensorDict out;
  for (const auto& [name, p] : sets[0]) {
    std::vector<Tensor> parts;
    for (const TensorDict& set : sets) parts.push_back(set.at(name));
    out.insert(name, stack(parts));
  }
  return out;
}

// forward(per-task weights, stacked inputs) sliced at t equals forward(task t's weights, its
// input), in value and in the gradient of a random projection with respect to each weight.
void check_per_task_forward(const std::function<Tensor(const nn::Params&, const Tensor&)>& forward,
                            const nn::Module& layer, const std::vector<Tensor>& inputs, double tolerance = 1e-12) {
  const int64_t tasks = static_cast<int64_t>(inputs.size());
  const std::vector<TensorDict> sets = task_params(layer, tasks, 99);
  const TensorDict batched = stacked(sets);
  const Tensor out = forward(nn::Params(batched), stack(inputs));
  REQUIRE(out.size(0) == tasks);
  Generator gen(7);
  const Tensor probe = randn(out.shape(), out.dtype(), kCPU, &gen);
  const TensorList batched_grads = grad({(out * probe).sum()}, batched.values());
  for (int64_t t = 0; t < tasks; ++t) {
    const Tensor single = forward(nn::Params(sets[t]), inputs[t]);
    CHECK(relative_error(out.select(0, t).to_vector(), single.to_vector()) < tolerance);
    const TensorList grads = grad({(single * probe.select(0, t)).sum()}, sets[t].values());
    for (std::size_t i = 0; i < grads.size(); ++i)
      CHECK(relative_error(batched_grads[i].select(0, t).to_vector(), grads[i].to_vector()) < tolerance);
  }
}

std::function<Tensor(const nn::Params&, const Tensor&)> forward_of(nn::Module& layer) {
  return [&layer](const nn::Params& p, const Tensor& x) { return layer.forward(p, x); };
}

// The meta-gradient (of the mean query loss over the batch's tasks, with respect to params and
// the learned rates, flattened) computed task by task and task-batched.
struct MetaGradients {
  std::vector<double> looped, batched;
  double looped_loss = 0, batched_loss = 0;
};

MetaGradients meta_gradients(nn::Module& model, const TensorDict& params, const meta::TaskBatch& batch,
                             const meta::LossFn& loss, const meta::BatchedLossFn& batched_loss,
                             const meta::MamlOptions& options, const TensorDict* lrs = nullptr) {
  TensorList inputs = params.values();
  if (lrs)
    for (const Tensor& r : lrs->values()) inputs.push_back(r);
  MetaGradients out;
  Tensor total;
  std::vector<double> per_task;
  for (int64_t t = 0; t < batch.size(); ++t) {
    const Tensor l = meta::maml_task_loss(model, params, batch.task(t), loss, options, lrs).query_loss;
    per_task.push_back(l.item());
    total = total.defined() ? total + l : l;
  }
  total = total / static_cast<double>(batch.size());
  out.looped_loss = total.item();
  out.looped = flatten(grad({total}, inputs));

  const meta::BatchedTaskLoss b = meta::maml_batched_loss(model, params, batch, batched_loss, options, lrs);
  out.batched_loss = b.query_loss.item();
  out.batched = flatten(grad({b.query_loss}, inputs));
  const std::vector<double> task_losses = b.task_query_losses.values_as_double();
  REQUIRE(task_losses.size() == per_task.size());
  for (std::size_t t = 0; t < per_task.size(); ++t) CHECK(task_losses[t] == doctest::Approx(per_task[t]).epsilon(1e-5));
  return out;
}

// The variants every model is checked under: second-order MAML with 2 inner steps, first-order
// MAML, Meta-SGD (per-element rates), MAML++ (per-step rates, multi-step loss), ANIL.
struct Variant {
  const char* name;
  meta::MamlOptions options;
};

std::vector<Variant> variants(double lr) {
  std::vector<Variant> out;
  out.push_back({"MAML, 2 steps", {.inner = {.steps = 2, .lr = lr}}});
  out.push_back({"first-order MAML", {.inner = {.steps = 2, .lr = lr, .second_order = false}}});
  out.push_back({"Meta-SGD", {.inner = {.steps = 2, .lr = lr, .learned_lr = meta::LearnedLr::PerElement}}});
  out.push_back({"MAML++",
                 {.inner = {.steps = 2, .lr = lr, .learned_lr = meta::LearnedLr::PerTensorPerStep},
                  .multi_step_weights = {0.3, 0.7}}});
  out.push_back({"ANIL", {.inner = {.steps = 2, .lr = lr, .adapt_prefixes = {"head."}}}});
  return out;
}

// Runs every variant in dtype and checks the two meta-gradients agree to tolerance.
void check_variants(const char* model_name, nn::Module& model, const meta::TaskBatch& batch, const meta::LossFn& loss,
                    const meta::BatchedLossFn& batched_loss, double lr, double tolerance) {
  for (const Variant& v : variants(lr)) {
    INFO(std::string(model_name) << ", " << std::string(v.name));
    const TensorDict params = fresh_leaves(model.named_parameters());
    TensorDict lrs;
    if (v.options.inner.learned_lr != meta::LearnedLr::None) lrs = meta::make_learned_lrs(params, v.options.inner);
    const MetaGradients g =
        meta_gradients(model, params, batch, loss, batched_loss, v.options, lrs.empty() ? nullptr : &lrs);
    const double err = relative_error(g.batched, g.looped);
    MESSAGE(std::string(model_name) << ", " << std::string(v.name) << ", " << dtype_name(params.values()[0].dtype())
                                    << ": " << g.looped.size() << " meta-gradient entries, max relative difference "
                                    << err);
    CHECK(err < tolerance);
    CHECK(std::abs(g.batched_loss - g.looped_loss) <= tolerance * std::abs(g.looped_loss));
  }
}

meta::TaskBatch sinusoid_batch(DType dtype, int64_t tasks) {
  meta::SinusoidSampler sampler({.shots = 5, .queries = 7, .dtype = dtype}, 3);
  return sampler.batch(0, tasks);
}

// Omniglot-shaped classification tasks of random images: ways x shots support and query images.
meta::TaskBatch image_batch(DType dtype, int64_t tasks, int64_t ways, int64_t shots, int64_t side, uint64_t seed) {
  Generator gen(seed);
  std::vector<meta::Task> list;
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < ways * shots; ++i) labels.push_back(i % ways);
  for (int64_t t = 0; t < tasks; ++t) {
    meta::Task task;
    task.support_x = randn({ways * shots, 1, side, side}, dtype, kCPU, &gen);
    task.support_y = tensor(labels, {ways * shots});
    task.query_x = randn({ways * shots, 1, side, side}, dtype, kCPU, &gen);
    task.query_y = tensor(labels, {ways * shots});
    list.push_back(task);
  }
  return meta::stack_tasks(list);
}

// Token sequences in [1, vocab) whose tails are padding (0) for some of them.
Tensor padded_tokens(int64_t n, int64_t len, int64_t vocab, Generator& gen) {
  Tensor tokens = randint(1, vocab, {n, len}, kCPU, &gen);
  std::vector<int64_t> values = tokens.to_vector<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = len - i % 3; j < len; ++j) values[static_cast<std::size_t>(i * len + j)] = 0;
  return tensor(values, {n, len});
}

meta::TaskBatch token_batch(int64_t tasks, int64_t ways, int64_t shots, int64_t len, int64_t vocab, uint64_t seed) {
  Generator gen(seed);
  std::vector<meta::Task> list;
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < ways * shots; ++i) labels.push_back(i % ways);
  for (int64_t t = 0; t < tasks; ++t) {
    meta::Task task;
    task.support_x = padded_tokens(ways * shots, len, vocab, gen);
    task.support_y = tensor(labels, {ways * shots});
    task.query_x = padded_tokens(ways * shots, len, vocab, gen);
    task.query_y = tensor(labels, {ways * shots});
    list.push_back(task);
  }
  return meta::stack_tasks(list);
}

meta::TransformerClassifierOptions small_transformer() {
  return {.vocab = 11, .max_len = 6, .d_model = 16, .heads = 2, .layers = 1, .dim_feedforward = 32, .classes = 3};
}

}  // namespace

TEST_SUITE("meta.batched") {
  TEST_CASE("each layer's forward with per-task weights equals its per-task forwards") {
    Generator gen(1);
    auto inputs = [&](int64_t tasks, const Shape& shape) {
      std::vector<Tensor> xs;
      for (int64_t t = 0; t < tasks; ++t) xs.push_back(randn(shape, kFloat64, kCPU, &gen));
      return xs;
    };
    SUBCASE("Linear, on [T, N, in] and [T, B, L, in]") {
      nn::Linear layer(4, 3, true, &gen);
      layer.to(kFloat64);
      check_per_task_forward(forward_of(layer), layer, inputs(3, {5, 4}));
      check_per_task_forward(forward_of(layer), layer, inputs(2, {2, 3, 4}));
    }
    SUBCASE("Conv2d, padded and strided") {
      nn::Conv2d layer(2, 3, 3, 2, 1, true, &gen);
      layer.to(kFloat64);
      check_per_task_forward(forward_of(layer), layer, inputs(3, {2, 2, 7, 6}));
    }
    SUBCASE("BatchNorm2d, transductive: each task's own statistics") {
      nn::BatchNorm2d layer(3, nn::BatchNorm2dOptions{.mode = nn::BatchNormMode::Transductive});
      layer.to(kFloat64);
      check_per_task_forward(forward_of(layer), layer, inputs(3, {4, 3, 2, 2}));
    }
    SUBCASE("BatchNorm2d, running statistics in eval()") {
      nn::BatchNorm2d layer(3);
      layer.to(kFloat64);
      layer.train();
      layer.forward(randn({6, 3, 2, 2}, kFloat64, kCPU, &gen) * 2.0 + 1.0);  // running statistics away from 0, 1
      layer.eval();
      check_per_task_forward(forward_of(layer), layer, inputs(3, {4, 3, 2, 2}));
    }
    SUBCASE("LayerNorm over one and two trailing dims") {
      nn::LayerNorm layer(Shape{4});
      layer.to(kFloat64);
      check_per_task_forward(forward_of(layer), layer, inputs(3, {2, 5, 4}));
      nn::LayerNorm layer2(Shape{2, 3});
      layer2.to(kFloat64);
      check_per_task_forward(forward_of(layer2), layer2, inputs(2, {4, 2, 3}));
    }
    SUBCASE("Embedding with a padding row") {
      nn::Embedding layer(7, 3, 0, &gen);
      layer.to(kFloat64);
      std::vector<Tensor> tokens;
      for (int t = 0; t < 3; ++t) tokens.push_back(randint(0, 7, {4, 5}, kCPU, &gen));
      check_per_task_forward(forward_of(layer), layer, tokens);
    }
    SUBCASE("MaxPool2d has no weights and folds the task dim") {
      nn::MaxPool2d pool(2);
      const std::vector<Tensor> xs = inputs(3, {2, 3, 4, 4});
      const Tensor out = pool(stack(xs));
      for (int64_t t = 0; t < 3; ++t) CHECK(out.select(0, t).to_vector() == pool(xs[t]).to_vector());
    }
    SUBCASE("MultiheadAttention with a key padding mask, self and cross attention") {
      nn::MultiheadAttention layer(8, 2, 0.0, true, &gen);
      layer.to(kFloat64);
      std::vector<Tensor> xs = inputs(3, {2, 4, 8}), memories = inputs(3, {2, 5, 8}), pads;
      for (int t = 0; t < 3; ++t)
        pads.push_back(gt(rand({2, 5}, kFloat64, kCPU, &gen), scalar(0.7, kFloat64)).to(kInt64));
      check_per_task_forward(forward_of(layer), layer, xs);
      const std::vector<TensorDict> sets = task_params(layer, 3, 5);
      const auto batched = layer.forward(nn::Params(stacked(sets)), stack(xs), stack(memories), stack(memories),
                                         {.key_padding_mask = stack(pads)}, /*need_weights=*/true);
      CHECK(batched.weights.shape() == Shape{3, 2, 4, 5});
      for (std::size_t t = 0; t < 3; ++t) {
        const auto single = layer.forward(nn::Params(sets[t]), xs[t], memories[t], memories[t],
                                          {.key_padding_mask = pads[t]}, /*need_weights=*/true);
        const int64_t i = static_cast<int64_t>(t);
        CHECK(relative_error(batched.output.select(0, i).to_vector(), single.output.to_vector()) < 1e-12);
        CHECK(relative_error(batched.weights.select(0, i).to_vector(), single.weights.to_vector()) < 1e-12);
      }
    }
    SUBCASE("TransformerEncoderLayer, pre-norm and post-norm") {
      for (bool norm_first : {true, false}) {
        nn::TransformerEncoderLayer layer(
            {.d_model = 8, .nhead = 2, .dim_feedforward = 12, .dropout = 0.0, .norm_first = norm_first}, &gen);
        layer.to(kFloat64);
        check_per_task_forward(forward_of(layer), layer, inputs(2, {3, 4, 8}));
      }
    }
  }

  TEST_CASE("BatchNorm2d in train() updates its running statistics task by task") {
    for (std::optional<double> momentum : {std::optional<double>(0.1), std::optional<double>()}) {
      Generator gen(10);
      nn::BatchNorm2d batched(3, 1e-5, momentum), looped(3, 1e-5, momentum);
      batched.to(kFloat64);
      looped.to(kFloat64);
      std::vector<Tensor> xs;
      for (int t = 0; t < 4; ++t) xs.push_back(randn({5, 3, 2, 2}, kFloat64, kCPU, &gen) * (t + 1.0) + t);
      const std::vector<TensorDict> sets = task_params(looped, 4, 11);
      const Tensor out = batched.forward(nn::Params(stacked(sets)), stack(xs));
      for (std::size_t t = 0; t < 4; ++t) {
        const Tensor single = looped.forward(nn::Params(sets[t]), xs[t]);
        CHECK(relative_error(out.select(0, static_cast<int64_t>(t)).to_vector(), single.to_vector()) < 1e-12);
      }
      for (const char* name : {"running_mean", "running_var", "num_batches_tracked"})
        CHECK(relative_error(batched.buffer(name).to_vector(), looped.buffer(name).to_vector()) < 1e-12);
      CHECK(batched.buffer("num_batches_tracked").item() == 4.0);
    }
  }

  TEST_CASE("the per-task functional forms pass gradcheck and gradgradcheck") {
    Generator gen(12);
    auto in = [&](const Shape& shape) { return randn(shape, kFloat64, kCPU, &gen).requires_grad_(); };
    auto check = [](const char* what, const TensorFunction& f, const TensorList& inputs) {
      INFO(std::string(what));
      const GradcheckResult first = gradcheck(f, inputs);
      CHECK_MESSAGE(first.ok, first.message);
      const GradcheckResult second = gradgradcheck(f, inputs);
      CHECK_MESSAGE(second.ok, second.message);
    };
    check("linear", [](const TensorList& a) { return nn::F::linear(a[0], a[1], a[2]); },
          {in({2, 3, 4}), in({2, 5, 4}), in({2, 5})});
    check("conv2d", [](const TensorList& a) { return nn::F::conv2d_per_task(a[0], a[1], a[2], 1, 1); },
          {in({2, 2, 2, 3, 3}), in({2, 2, 2, 2, 2}), in({2, 2})});
    // Strided, so the input gradient folds the columns back (col2im) instead of convolving.
    check("conv2d, stride 2, no bias",
          [](const TensorList& a) { return nn::F::conv2d_per_task(a[0], a[1], Tensor(), 2, 1); },
          {in({3, 2, 2, 5, 5}), in({3, 3, 2, 3, 3})});
    check("layer_norm", [](const TensorList& a) { return nn::F::layer_norm(a[0], {3}, a[1], a[2]); },
          {in({2, 2, 3}), in({2, 3}), in({2, 3})});
    check("batch_norm2d",
          [](const TensorList& a) { return nn::F::batch_norm2d(a[0], Tensor(), Tensor(), a[1], a[2], true); },
          {in({2, 3, 2, 2, 2}), in({2, 2}), in({2, 2})});
    check("embedding", [](const TensorList& a) { return nn::F::embedding(a[1], a[0]); },
          {in({2, 4, 3}), randint(0, 4, {2, 3}, kCPU, &gen)});
    check("multi_head_attention",
          [](const TensorList& a) {
            return nn::F::multi_head_attention_forward(a[0], a[0], a[0], 2, {a[1], a[2], a[3], a[4]},
                                                       {.key_padding_mask = a[5]})
                .output;
          },
          {in({2, 2, 3, 4}), in({2, 12, 4}), in({2, 12}), in({2, 4, 4}), in({2, 4}),
           tensor(std::vector<int64_t>{0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1}, {2, 2, 3})});
  }

  TEST_CASE("a per-task weight whose task count differs from the input's is a clear error") {
    const TensorDict linear{{"weight", zeros({3, 2, 4})}, {"bias", zeros({3, 2})}};
    nn::Linear lin(4, 2);
    CHECK_MG_ERROR(lin.forward(nn::Params(linear), zeros({2, 5, 4})), "linear", "[3,2,4]", "holds 3 tasks",
                   "has 2 in its leading (task) dim");
    CHECK_MG_ERROR(lin.forward(nn::Params(linear), zeros({4})), "linear", "task-batched input");
    CHECK_MG_ERROR(
        lin.forward(nn::Params(TensorDict{{"weight", zeros({3, 2, 4})}, {"bias", zeros({2})}}), zeros({3, 5, 4})),
        "linear: bias [2]");

    nn::Conv2d conv(1, 2, 3);
    const TensorDict conv_params{{"weight", zeros({3, 2, 1, 3, 3})}, {"bias", zeros({3, 2})}};
    CHECK_MG_ERROR(conv.forward(nn::Params(conv_params), zeros({2, 4, 1, 5, 5})), "conv2d", "holds 3 tasks",
                   "has 2 in its leading (task) dim");
    CHECK_MG_ERROR(conv.forward(nn::Params(conv_params), zeros({3, 1, 5, 5})), "conv2d", "task-batched input");
    CHECK_MG_ERROR(conv.forward(nn::Params(conv_params), zeros({3, 4, 2, 5, 5})), "conv2d", "2 channels",
                   "expects 1");
    CHECK_MG_ERROR(
        conv.forward(nn::Params(TensorDict{{"weight", zeros({3, 2, 1, 3, 3})}, {"bias", zeros({2})}}),
                     zeros({3, 4, 1, 5, 5})),
        "conv2d: bias must be 2-D [3,2]");

    nn::BatchNorm2d bn(2, nn::BatchNorm2dOptions{.mode = nn::BatchNormMode::Transductive});
    CHECK_MG_ERROR(
        bn.forward(nn::Params(TensorDict{{"weight", ones({3, 2})}, {"bias", zeros({3, 2})}}), zeros({2, 4, 2, 3, 3})),
        "batch_norm2d", "holds 3 tasks", "has 2");
    CHECK_MG_ERROR(
        bn.forward(nn::Params(TensorDict{{"weight", ones({2})}, {"bias", zeros({2})}}), zeros({2, 4, 2, 3, 3})),
        "batch_norm2d: weight must be [T, 2] for task-batched input");

    nn::LayerNorm ln(Shape{4});
    CHECK_MG_ERROR(
        ln.forward(nn::Params(TensorDict{{"weight", ones({3, 4})}, {"bias", zeros({3, 4})}}), zeros({2, 5, 4})),
        "layer_norm", "holds 3 tasks", "has 2");

    nn::Embedding emb(5, 2);
    const TensorDict table{{"weight", zeros({3, 5, 2})}};
    CHECK_MG_ERROR(emb.forward(nn::Params(table), zeros({2, 4}, kInt64)), "embedding", "holds 3 tasks", "has 2");
    // An index past its own task's table must not read the next task's.
    CHECK_MG_ERROR(emb.forward(nn::Params(table), full({3, 4}, 5.0, kInt64)), "embedding: index 5 is out of range",
                   "5 embeddings");

    nn::MultiheadAttention mha(4, 2);
    TensorDict attn = mha.named_parameters().map([](const Tensor& p) {
      Shape shape{3};
      shape.insert(shape.end(), p.shape().begin(), p.shape().end());
      return zeros(shape);
    });
    CHECK_MG_ERROR(mha.forward(nn::Params(attn), zeros({2, 2, 3, 4})), "multi_head_attention", "holds 3 tasks",
                   "has 2");
    CHECK_MG_ERROR(mha.forward(nn::Params(attn), zeros({2, 3, 4})), "multi_head_attention",
                   "per-task weights expect [T, B, L, E]");
    CHECK_MG_ERROR(mha.forward(nn::Params(attn), zeros({3, 2, 3, 4}), zeros({3, 2, 5, 4}), zeros({3, 2, 5, 4}),
                               {.key_padding_mask = zeros({2, 5}, kInt64)}),
                   "key_padding_mask [2,5]", "must be [3,2,5]");

    meta::TransformerClassifier model(small_transformer());
    const TensorDict expanded = meta::expand_for_tasks(model.named_parameters(), 3);
    CHECK_MG_ERROR(model.forward(nn::Params(expanded), zeros({2, 4, 5}, kInt64)), "TransformerClassifier",
                   "holds 3 tasks", "has 2");
    CHECK_MG_ERROR(model.forward(nn::Params(expanded), zeros({4, 5}, kInt64)), "TransformerClassifier", "[T, B, L]");
    meta::Conv4 conv4({.image_size = 8, .hidden = 4, .blocks = 2, .ways = 2});
    CHECK_MG_ERROR(
        conv4.forward(nn::Params(meta::expand_for_tasks(conv4.named_parameters(), 3)), zeros({2, 4, 1, 8, 8})),
        "conv2d", "holds 3 tasks", "has 2");
  }

  TEST_CASE("maml_batched_loss refuses a batch whose fields disagree on the task count") {
    meta::MlpModel model({});
    meta::TaskBatch batch = sinusoid_batch(kFloat32, 3);
    batch.query_y = batch.query_y.narrow(0, 0, 2);
    CHECK_MG_ERROR(meta::maml_batched_loss(model, model.named_parameters(), batch, meta::batched_mse, {}),
                   "maml_batched_loss: query_y", "does not have the 3 tasks");
    CHECK_MG_ERROR(meta::batched_mse(zeros({3, 4, 1}), zeros({3, 4})), "batched_mse", "same shape");
    CHECK_MG_ERROR(meta::batched_cross_entropy(zeros({3, 4, 2}), zeros({3, 5}, kInt64)), "batched_cross_entropy",
                   "[T, N, C]");
    CHECK_MG_ERROR(meta::expand_for_tasks(model.named_parameters(), 0), "expand_for_tasks", ">= 1");
  }

  TEST_CASE("expand_for_tasks broadcasts each parameter and sums the tasks' gradients back") {
    const Tensor w = tensor({1.0, 2.0}, kFloat64).requires_grad_();
    const TensorDict expanded = meta::expand_for_tasks(TensorDict{{"w", w}}, 3);
    CHECK(expanded.at("w").shape() == Shape{3, 2});
    const Tensor weights = tensor({1.0, 10.0, 100.0}, {3, 1}, kFloat64);
    const Tensor g = grad({(expanded.at("w") * weights).sum()}, {w})[0];
    CHECK(g.to_vector() == std::vector<double>{111.0, 111.0});
  }

  TEST_CASE("batched losses are each task's mean loss") {
    Generator gen(2);
    const Tensor out = randn({3, 4, 2}, kFloat64, kCPU, &gen), y = randn({3, 4, 2}, kFloat64, kCPU, &gen);
    const Tensor labels = randint(0, 2, {3, 4}, kCPU, &gen);
    const std::vector<double> mse = meta::batched_mse(out, y).to_vector();
    const std::vector<double> ce = meta::batched_cross_entropy(out, labels).to_vector();
    REQUIRE(mse.size() == 3);
    REQUIRE(ce.size() == 3);
    for (int64_t t = 0; t < 3; ++t) {
      const auto i = static_cast<std::size_t>(t);
      CHECK(mse[i] == doctest::Approx(nn::mse_loss(out.select(0, t), y.select(0, t)).item()).epsilon(1e-14));
      CHECK(ce[i] == doctest::Approx(nn::cross_entropy(out.select(0, t), labels.select(0, t)).item()).epsilon(1e-14));
    }
  }

  TEST_CASE("a batched loss that does not give one value per task is refused") {
    meta::MlpModel model({});
    const meta::TaskBatch batch = sinusoid_batch(kFloat32, 3);
    const meta::BatchedLossFn summed = [](const Tensor& out, const Tensor& y) { return sum(meta::batched_mse(out, y)); };
    CHECK_MG_ERROR(meta::maml_batched_loss(model, model.named_parameters(), batch, summed, {}), "maml_batched_loss",
                   "one value per task [3]");
  }

  TEST_CASE("MLP on sinusoids: the task-batched meta-gradient equals the loop over tasks") {
    for (DType dtype : {kFloat32, kFloat64}) {
      Generator gen(3);
      meta::MlpModel model({.hidden = {16, 16}}, &gen);
      model.to(dtype);
      check_variants("MLP", model, sinusoid_batch(dtype, 4), mse, meta::batched_mse, 0.05,
                     dtype == kFloat32 ? 1e-6 : 1e-12);
    }
  }

  TEST_CASE("conv4 with transductive BatchNorm: the task-batched meta-gradient equals the loop over tasks") {
    for (DType dtype : {kFloat32, kFloat64}) {
      Generator gen(4);
      meta::Conv4 model({.image_size = 8, .hidden = 8, .blocks = 3, .ways = 3}, &gen);
      model.to(dtype);
      check_variants("conv4", model, image_batch(dtype, 3, 3, 2, 8, 5), ce, meta::batched_cross_entropy, 0.1,
                     dtype == kFloat32 ? 1e-6 : 1e-12);
    }
  }

  TEST_CASE("transformer classifier with padding: the task-batched meta-gradient equals the loop over tasks") {
    for (DType dtype : {kFloat32, kFloat64}) {
      Generator gen(6);
      meta::TransformerClassifier model(small_transformer(), &gen);
      model.to(dtype);
      check_variants("transformer", model, token_batch(3, 3, 2, 6, 11, 7), ce, meta::batched_cross_entropy, 0.1,
                     dtype == kFloat32 ? 1e-6 : 1e-12);
    }
  }

  TEST_CASE("per-step BatchNorm: batched and looped meta-batches agree, running statistics included") {
    Generator gen(8);
    meta::Conv4 model(
        {.image_size = 8, .hidden = 4, .blocks = 2, .ways = 2, .bn_mode = nn::BatchNormMode::PerStep, .bn_steps = 3},
        &gen);
    model.to(kFloat64);
    const meta::TaskBatch batch = image_batch(kFloat64, 3, 2, 3, 8, 9);
    const meta::MamlOptions options{.inner = {.steps = 2, .lr = 0.1}};
    const TensorDict params = fresh_leaves(model.named_parameters());
    auto running_stats = [&] {
      std::vector<double> out;
      for (const auto& [name, b] : model.named_buffers())
        for (double v : b.to_vector()) out.push_back(v);
      return out;
    };
    auto reset = [&] {
      for (const auto& m : model.child("blocks")->children())
        static_cast<nn::BatchNorm2d&>(*m.second->child("bn")).reset_running_stats();
    };
    reset();
    Tensor total;
    for (int64_t t = 0; t < batch.size(); ++t) {
      const Tensor l = meta::maml_task_loss(model, params, batch.task(t), ce, options).query_loss;
      total = total.defined() ? total + l : l;
    }
    const std::vector<double> looped = flatten(grad({total / 3.0}, params.values()));
    const std::vector<double> looped_stats = running_stats();
    reset();
    const Tensor batched_loss =
        meta::maml_batched_loss(model, params, batch, meta::batched_cross_entropy, options).query_loss;
    const std::vector<double> batched = flatten(grad({batched_loss}, params.values()));
    CHECK(relative_error(batched, looped) < 1e-12);
    CHECK(relative_error(running_stats(), looped_stats) < 1e-12);
    // Every task counted once per step's forward: 3 tasks x (2 support steps + 1 query pass).
    const Tensor counts = model.child("blocks")->child("0")->child("bn")->buffer("num_batches_tracked");
    CHECK(counts.to_vector() == std::vector<double>{3.0, 3.0, 3.0});
  }
}
