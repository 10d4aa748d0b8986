// Tasks on threads (meta/task_parallel.h): the combined results are those of a loop on one
// thread, bit for bit; buffer updates land in task order; errors and modes cross the threads.
#include <doctest/doctest.h>

#include <stdexcept>
#include <vector>

#include "../autograd/grad_mode.h"
#include "../autograd/ops.h"
#include "../autograd/shared_leaves.h"
#include "../meta/maml.h"
#include "../meta/task_parallel.h"
#include "../nn/batch_norm2d.h"
#include "../nn/dropout.h"
#include "../nn/losses.h"
#include "../nn/mlp.h"
#include "../tensor/creation.h"
#include "../tensor/error.h"
#include "../tensor/threads.h"
#include "meta_test_util.h"

using namespace mg;

namespace {

// Restores the thread count a test changed.
class ThreadCount {
 public:
  explicit ThreadCount(int n) : before_(num_threads()) { set_num_threads(n); }
  ~ThreadCount() { set_num_threads(before_); }
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;

 private:
  int before_;
};

std::vector<std::vector<double>> grads_of(const TensorList& leaves) {
  std::vector<std::vector<double>> out;
  for (const Tensor& leaf : leaves)
    out.push_back(leaf.grad().defined() ? leaf.grad().to_vector() : std::vector<double>{});
  return out;
}

}  // namespace

TEST_SUITE("meta.task_parallel") {
  TEST_CASE("second-order MAML meta-gradients from tasks on 2 threads equal the loop's on 1, bit for bit") {
    Generator gen(5);
    auto model = nn::make_mlp({.sizes = {3, 16, 16, 1}, .activation = nn::functional::Activation::Tanh}, &gen);
    model->to(kFloat64);
    std::vector<meta::Task> tasks;
    for (uint64_t t = 0; t < 7; ++t) tasks.push_back(testing::regression_task(100 + t, 3, 6));
    const meta::LossFn loss = [](const Tensor& out, const Tensor& y) { return nn::mse_loss(out, y); };
    meta::MamlOptions options;
    options.inner = {.steps = 2, .lr = 0.05, .second_order = true};
    auto run = [&](int threads, const nn::TensorDict& params) {
      TensorList leaves;
      for (const auto& [name, p] : params) leaves.push_back(p);
      const std::vector<double> losses =
          meta::accumulate_task_gradients(leaves, static_cast<int64_t>(tasks.size()), threads, 1.0 / 7, [&](int64_t t) {
            return meta::maml_task_loss(*model, params, tasks[static_cast<std::size_t>(t)], loss, options).query_loss;
          });
      return std::make_pair(losses, grads_of(leaves));
    };
    const nn::TensorDict serial_params = testing::fresh_leaves(model->named_parameters());
    const nn::TensorDict threaded_params = testing::fresh_leaves(model->named_parameters());
    std::pair<std::vector<double>, std::vector<std::vector<double>>> serial, threaded;
    {
      ThreadCount one(1);
      serial = run(1, serial_params);
    }
    {
      ThreadCount two(2);
      threaded = run(2, threaded_params);
    }
    CHECK(serial.first == threaded.first);
    CHECK(serial.second == threaded.second);
    // And both are the meta-gradient: against central differences of the mean query loss.
    const std::vector<double> fd = testing::finite_differences(serial_params, [&](const nn::TensorDict& p) {
      double total = 0;
      for (const meta::Task& task : tasks)
        total += meta::maml_task_loss(*model, p, task, loss, options).query_loss.item();
      return total / 7;
    });
    std::vector<double> flat;
    for (const auto& g : threaded.second) flat.insert(flat.end(), g.begin(), g.end());
    CHECK(testing::max_relative_error(flat, fd) < 1e-6);
  }

  TEST_CASE("gradients add to what .grad held, in task order") {
    ThreadCount two(2);
    const Tensor w = tensor(std::vector<double>{1.0, 2.0}, {2}).requires_grad_();
    w.set_grad(tensor(std::vector<double>{10.0, 20.0}, {2}));
    meta::accumulate_task_gradients({w}, 4, 2, 0.5, [&](int64_t t) { return sum(w * static_cast<double>(t + 1)); });
    CHECK(w.grad().to_vector() == std::vector<double>{15.0, 25.0});  // 10 + 0.5 * (1 + 2 + 3 + 4)
  }

  TEST_CASE("BatchNorm running statistics end as the loop leaves them") {
    ThreadCount two(2);
    for (std::optional<double> momentum : {std::optional<double>(0.1), std::optional<double>()}) {
      nn::BatchNorm2d serial(3, 1e-5, momentum), threaded(3, 1e-5, momentum);
      std::vector<Tensor> inputs;
      Generator gen(9);
      for (int t = 0; t < 6; ++t) inputs.push_back(randn({4, 3, 5, 5}, kFloat32, kCPU, &gen) * (1.0 + t));
      meta::for_each_task(6, 1, [&](int64_t t) { serial.forward(inputs[static_cast<std::size_t>(t)]); });
      meta::for_each_task(6, 2, [&](int64_t t) { threaded.forward(inputs[static_cast<std::size_t>(t)]); });
      for (const char* name : {"running_mean", "running_var", "num_batches_tracked"}) {
        CAPTURE(name);
        CHECK(serial.buffer(name).to_vector() == threaded.buffer(name).to_vector());
      }
      CHECK(threaded.buffer("num_batches_tracked").item() == 6.0);
    }
  }

  TEST_CASE("every task runs, the lowest failing task's error is rethrown, and no buffer is updated") {
    ThreadCount two(2);
    nn::BatchNorm2d bn(2);
    std::vector<int> ran(8, 0);
    const Tensor x = randn({3, 2, 2, 2});
    CHECK_THROWS_WITH_AS(meta::for_each_task(8, 2,
                                             [&](int64_t t) {
                                               ran[static_cast<std::size_t>(t)] = 1;
                                               bn.forward(x);
                                               if (t == 3 || t == 6)
                                                 throw std::runtime_error("task " + std::to_string(t));
                                             }),
                         "task 3", std::runtime_error);
    CHECK(ran == std::vector<int>(8, 1));
    CHECK(bn.buffer("num_batches_tracked").item() == 0.0);
  }

  TEST_CASE("tasks see the caller's grad mode") {
    ThreadCount two(2);
    std::vector<int> enabled(4, -1);
    {
      NoGradGuard no_grad;
      meta::for_each_task(4, 2, [&](int64_t t) { enabled[static_cast<std::size_t>(t)] = GradMode::is_enabled(); });
    }
    CHECK(enabled == std::vector<int>(4, 0));
    meta::for_each_task(4, 2, [&](int64_t t) { enabled[static_cast<std::size_t>(t)] = GradMode::is_enabled(); });
    CHECK(enabled == std::vector<int>(4, 1));
  }

  TEST_CASE("which models run their tasks on threads") {
    ThreadCount two(2);
    const int threads = num_threads();  // 2, or 1 in a build without OpenMP
    Generator gen(1);
    auto plain = nn::make_mlp({.sizes = {2, 4, 1}}, &gen);
    CHECK(meta::task_threads(*plain, 5) == threads);
    CHECK(meta::task_threads(*plain, 1) == 1);
    auto with_dropout = nn::make_mlp({.sizes = {2, 4, 1}, .dropout = 0.25}, &gen);
    CHECK(meta::task_threads(*with_dropout, 5) == 1);
    with_dropout->eval();  // no random draws in evaluation
    CHECK(meta::task_threads(*with_dropout, 5) == threads);
    nn::BatchNorm2d per_step(4, {.mode = nn::BatchNormMode::PerStep, .num_steps = 2});
    CHECK_FALSE(per_step.concurrent_forward());
    nn::BatchNorm2d running(4);
    CHECK(running.concurrent_forward());
  }

  TEST_CASE("only leaves can be shared between recording threads") {
    const Tensor w = ones({2}).requires_grad_();
    CHECK_NOTHROW(SharedLeaves({w}));
    CHECK_THROWS_WITH_AS(SharedLeaves({w * 2.0}), doctest::Contains("not a leaf"), Error);
    CHECK_THROWS_WITH_AS(SharedLeaves({Tensor()}), doctest::Contains("undefined"), Error);
  }
}
