// MAML (Finn, Abbeel and Levine 2017) on sinusoid regression, the paper's setup: an MLP 1-40-40-1
// learns an initialisation from which one SGD step on 10 points of a new sine wave fits it.
//   maml_sinusoid [iterations]     (the default is a short run; the paper trains 70,000)
// docs/reference/sinusoid_maml_torch.py is the same program in PyTorch, for comparison.
#include <metagrad/metagrad.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

using namespace mg;

namespace {

// Mean and 1.96 * standard error: a 95% interval for the mean over tasks.
std::pair<double, double> mean_ci95(const std::vector<double>& v) {
  double sum = 0, sq = 0;
  for (double x : v) sum += x, sq += x * x;
  const double n = static_cast<double>(v.size()), mean = sum / n;
  const double variance = std::max(sq - n * mean * mean, 0.0) / (n - 1);
  return {mean, 1.96 * std::sqrt(variance / n)};
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t iterations = argc > 1 ? std::atoll(argv[1]) : 60;
  const int64_t meta_batch = 25;
  Generator init(0);
  meta::MlpModel model({}, &init);
  meta::SinusoidSampler train_tasks({.shots = 10, .queries = 10}, /*seed=*/1);
  meta::SinusoidSampler test_tasks({.shots = 10, .queries = 100}, /*seed=*/2);  // another stream: new waves
  const meta::LossFn mse = [](const Tensor& out, const Tensor& y) { return nn::mse_loss(out, y); };
  // second_order: the inner gradient is recorded on the tape, so backward() differentiates through
  // it and the meta-gradient gets its Hessian term, (I - lr * H_support) dL_query/dtheta'.
  const meta::MamlOptions maml{.inner = {.steps = 1, .lr = 0.01, .second_order = true}};
  nn::Adam adam(model.parameters(), {.lr = 1e-3});

  double window = 0;
  for (int64_t it = 1; it <= iterations; ++it) {
    adam.zero_grad();
    // theta: the model's own parameter tensors (leaves), so backward() accumulates into their .grad.
    const nn::TensorDict theta = model.named_parameters();
    double meta_loss = 0;
    for (int64_t t = 0; t < meta_batch; ++t) {
      // theta' = theta - lr * dL_support/dtheta, then L_query(theta'): one differentiable function
      // of theta. Dividing by the batch size makes the summed gradients those of the mean loss.
      Tensor loss = meta::maml_task_loss(model, theta, train_tasks.next(), mse, maml).query_loss / double(meta_batch);
      // One task at a time: its tape is freed after its backward, instead of keeping 25 alive.
      loss.backward();
      meta_loss += loss.item();
    }
    adam.step();
    if (!std::isfinite(meta_loss)) {
      std::printf("iteration %lld: meta-train loss is %f\n", static_cast<long long>(it), meta_loss);
      return 1;
    }
    window += meta_loss;
    const int64_t every = std::max<int64_t>(iterations / 10, 1);
    if (it % every == 0) {
      std::printf("iteration %6lld  meta-train loss (query MSE after 1 step) %.4f\n", static_cast<long long>(it),
                  window / double(every));
      window = 0;
    }
  }

  // Held-out waves: adapt with plain SGD from theta (no meta-gradient needed, so first order) and
  // measure the query MSE on 100 points before adaptation and after 1 and 10 steps.
  const int kTasks = 100, kSteps = 10;
  const meta::InnerLoopOptions eval{.steps = kSteps, .lr = 0.01, .second_order = false};
  std::vector<std::vector<double>> mse_after(kSteps + 1);
  for (int i = 0; i < kTasks; ++i) {
    const meta::Task task = test_tasks.task(i);
    const meta::Adaptation a =
        meta::adapt(model, model.named_parameters(), task.support_x, task.support_y, mse, eval, nullptr, true);
    NoGradGuard no_grad;
    mse_after[0].push_back(mse(model(task.query_x), task.query_y).item());
    for (int s = 1; s <= kSteps; ++s)
      mse_after[s].push_back(mse(model(nn::Params(a.history[s - 1]), task.query_x), task.query_y).item());
  }
  bool ok = true;
  for (int s : {0, 1, kSteps}) {
    const auto [mean, ci] = mean_ci95(mse_after[s]);
    std::printf("held-out query MSE after %2d steps: %.3f +- %.3f (%d tasks)\n", s, mean, ci, kTasks);
    ok = ok && std::isfinite(mean);
  }
  // Whatever the training length, ten SGD steps on the support set must help on the query set.
  if (!ok || mean_ci95(mse_after[kSteps]).first >= mean_ci95(mse_after[0]).first) {
    std::printf("FAILED: adaptation does not lower the held-out loss\n");
    return 1;
  }
}
