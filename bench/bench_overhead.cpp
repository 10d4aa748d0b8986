// Per-op overhead (dispatch + tape record + backward) on tiny tensors, and whole W-sin MAML
// meta-steps, beside LibTorch in the same binary when it was found (MG_BENCH_HAVE_TORCH).
//   OMP_NUM_THREADS=1 ./bench_overhead --benchmark_min_time=0.2
// Chain: x <- x * 1.0001 + 0.0 repeated 1,000 times on a [4] float32 leaf that requires grad:
// 2,000 ops per iteration; the "per_op" counter is seconds per op (lower is better).
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include <metagrad/metagrad.h>

#ifdef MG_BENCH_HAVE_TORCH
#include <torch/torch.h>
#endif

namespace {

using mg::Tensor;

constexpr int kChain = 1000;       // links
constexpr int kOpsPerLink = 2;     // mul, add
constexpr int64_t kMetaBatch = 25;
constexpr int64_t kShots = 10;
constexpr int64_t kQueries = 10;
constexpr double kInnerLr = 0.01;

void set_per_op(benchmark::State& state, int ops_per_iteration) {
  state.counters["per_op"] = benchmark::Counter(static_cast<double>(ops_per_iteration),
                                                benchmark::Counter::kIsIterationInvariantRate |
                                                    benchmark::Counter::kInvert);
}

// ---- metagrad chain ---------------------------------------------------------------------

void BM_mg_chain_nograd(benchmark::State& state) {
  mg::NoGradGuard no_grad;
  const Tensor x0 = mg::ones({4});
  for (auto _ : state) {
    Tensor x = x0;
    for (int i = 0; i < kChain; ++i) x = x * 1.0001 + 0.0;
    benchmark::DoNotOptimize(x);
  }
  set_per_op(state, kChain * kOpsPerLink);
}
BENCHMARK(BM_mg_chain_nograd)->Name("chain1000/mg/forward_nograd");

void BM_mg_chain_forward(benchmark::State& state) {
  const Tensor x0 = mg::ones({4}).requires_grad_();
  for (auto _ : state) {
    Tensor x = x0;
    for (int i = 0; i < kChain; ++i) x = x * 1.0001 + 0.0;
    benchmark::DoNotOptimize(x);
  }  // includes freeing the recorded graph
  set_per_op(state, kChain * kOpsPerLink);
}
BENCHMARK(BM_mg_chain_forward)->Name("chain1000/mg/forward_recording");

void BM_mg_chain_backward(benchmark::State& state) {
  const Tensor x0 = mg::ones({4}).requires_grad_();
  for (auto _ : state) {
    Tensor x = x0;
    for (int i = 0; i < kChain; ++i) x = x * 1.0001 + 0.0;
    x.sum().backward();
  }
  benchmark::DoNotOptimize(x0.grad());
  set_per_op(state, kChain * kOpsPerLink);
}
BENCHMARK(BM_mg_chain_backward)->Name("chain1000/mg/forward_backward");

// ---- metagrad W-sin meta-step -------------------------------------------------------------
// MLP 1-40-40-1 (ReLU), 25 tasks of K=10 support + 10 query, 1 inner SGD step (lr 0.01),
// second order, mean query loss over the tasks, backward into the initial parameters.

void BM_mg_wsin_meta_step(benchmark::State& state) {
  mg::Generator gen(7);
  auto model = mg::nn::make_mlp({.sizes = {1, 40, 40, 1}, .activation = mg::nn::functional::Activation::ReLU}, &gen);
  const mg::nn::TensorDict params = model->named_parameters();
  const mg::meta::SinusoidSampler sampler({.shots = kShots, .queries = kQueries}, 0);
  std::vector<mg::meta::Task> tasks;
  for (int64_t t = 0; t < kMetaBatch; ++t) tasks.push_back(sampler.sample(gen));
  const mg::meta::LossFn mse = [](const Tensor& out, const Tensor& y) { return mg::nn::mse_loss(out, y); };
  mg::meta::MamlOptions options;
  options.inner = {.steps = 1, .lr = kInnerLr, .second_order = true};
  for (auto _ : state) {
    Tensor total;
    for (const auto& task : tasks) {
      Tensor loss = mg::meta::maml_task_loss(*model, params, task, mse, options).query_loss;
      total = total.defined() ? total + loss : loss;
    }
    (total * (1.0 / static_cast<double>(kMetaBatch))).backward();
  }
  state.counters["meta_it/s"] = benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_mg_wsin_meta_step)->Name("wsin_meta_step/mg")->Unit(benchmark::kMillisecond);

#ifdef MG_BENCH_HAVE_TORCH
// ---- LibTorch reference -------------------------------------------------------------------

void BM_torch_chain_nograd(benchmark::State& state) {
  torch::NoGradGuard no_grad;
  const torch::Tensor x0 = torch::ones({4});
  for (auto _ : state) {
    torch::Tensor x = x0;
    for (int i = 0; i < kChain; ++i) x = x * 1.0001 + 0.0;
    benchmark::DoNotOptimize(x);
  }
  set_per_op(state, kChain * kOpsPerLink);
}
BENCHMARK(BM_torch_chain_nograd)->Name("chain1000/torch/forward_nograd");

void BM_torch_chain_forward(benchmark::State& state) {
  const torch::Tensor x0 = torch::ones({4}, torch::requires_grad());
  for (auto _ : state) {
    torch::Tensor x = x0;
    for (int i = 0; i < kChain; ++i) x = x * 1.0001 + 0.0;
    benchmark::DoNotOptimize(x);
  }
  set_per_op(state, kChain * kOpsPerLink);
}
BENCHMARK(BM_torch_chain_forward)->Name("chain1000/torch/forward_recording");

void BM_torch_chain_backward(benchmark::State& state) {
  const torch::Tensor x0 = torch::ones({4}, torch::requires_grad());
  for (auto _ : state) {
    torch::Tensor x = x0;
    for (int i = 0; i < kChain; ++i) x = x * 1.0001 + 0.0;
    x.sum().backward();
  }
  benchmark::DoNotOptimize(x0.grad());
  set_per_op(state, kChain * kOpsPerLink);
}
BENCHMARK(BM_torch_chain_backward)->Name("chain1000/torch/forward_backward");

// The same meta-step written functionally in LibTorch (torch::autograd::grad with create_graph).
torch::Tensor torch_mlp(const std::vector<torch::Tensor>& p, const torch::Tensor& x) {
  torch::Tensor h = torch::relu(torch::nn::functional::linear(x, p[0], p[1]));
  h = torch::relu(torch::nn::functional::linear(h, p[2], p[3]));
  return torch::nn::functional::linear(h, p[4], p[5]);
}

void BM_torch_wsin_meta_step(benchmark::State& state) {
  torch::manual_seed(7);
  std::vector<torch::Tensor> params;
  const std::vector<std::pair<int64_t, int64_t>> dims = {{40, 1}, {40, 40}, {1, 40}};
  for (const auto& [out, in] : dims) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    params.push_back(torch::empty({out, in}).uniform_(-bound, bound).requires_grad_());
    params.push_back(torch::empty({out}).uniform_(-bound, bound).requires_grad_());
  }
  struct TorchTask {
    torch::Tensor sx, sy, qx, qy;
  };
  std::vector<TorchTask> tasks;
  for (int64_t t = 0; t < kMetaBatch; ++t) {
    const double amp = 0.1 + 4.9 * torch::rand({1}).item<double>();
    const double phase = 3.141592653589793 * torch::rand({1}).item<double>();
    torch::Tensor sx = torch::rand({kShots, 1}) * 10.0 - 5.0;
    torch::Tensor qx = torch::rand({kQueries, 1}) * 10.0 - 5.0;
    tasks.push_back({sx, amp * torch::sin(sx - phase), qx, amp * torch::sin(qx - phase)});
  }
  for (auto _ : state) {
    torch::Tensor total;
    for (const auto& task : tasks) {
      torch::Tensor support_loss = torch::mse_loss(torch_mlp(params, task.sx), task.sy);
      std::vector<torch::Tensor> grads = torch::autograd::grad({support_loss}, params, {}, true, true);
      std::vector<torch::Tensor> fast;
      for (size_t i = 0; i < params.size(); ++i) fast.push_back(params[i] - kInnerLr * grads[i]);
      torch::Tensor loss = torch::mse_loss(torch_mlp(fast, task.qx), task.qy);
      total = total.defined() ? total + loss : loss;
    }
    (total * (1.0 / static_cast<double>(kMetaBatch))).backward();
  }
  state.counters["meta_it/s"] = benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_torch_wsin_meta_step)->Name("wsin_meta_step/torch")->Unit(benchmark::kMillisecond);
#endif

}  // namespace

BENCHMARK_MAIN();
