// metagrad's meta-steps, through the library's own MAML entry points exactly as meta::Trainer
// runs a MAML meta-batch: Batching::Looped (maml_task_loss per task through
// meta::accumulate_task_gradients, in turn with each task's graph freed before the next is built,
// or with the tasks on the threads) and Batching::TaskBatched (maml_batched_loss over the whole
// batch, one backward).
#include <vector>

#include "workloads.h"

namespace mg_bench {
namespace {

using mg::Tensor;

mg::meta::MamlOptions maml_options(const WorkloadSpec& spec) {
  mg::meta::MamlOptions options;
  options.inner = {.steps = spec.inner_steps, .lr = spec.inner_lr, .second_order = true};
  return options;
}

void clear_grads(const mg::nn::TensorDict& params) {
  for (const auto& [name, p] : params) p.set_grad(Tensor());
}

class MgLooped final : public MetaStep {
 public:
  MgLooped(Workload workload, bool tasks_on_threads)
      : spec_(workload_spec(workload)), data_(make_workload_data(workload)), options_(maml_options(spec_)) {
    if (spec_.regression)
      loss_ = [](const Tensor& out, const Tensor& y) { return mg::nn::mse_loss(out, y); };
    else
      loss_ = [](const Tensor& out, const Tensor& y) { return mg::nn::cross_entropy(out, y); };
    for (int64_t t = 0; t < data_.batch.size(); ++t) tasks_.push_back(data_.batch.task(t));
    for (const auto& [name, p] : data_.params) leaves_.push_back(p);
    threads_ = tasks_on_threads ? mg::meta::task_threads(*data_.model, data_.batch.size()) : 1;
  }

  double run() override {
    clear_grads(data_.params);
    const double scale = 1.0 / static_cast<double>(tasks_.size());
    const std::vector<double> losses = mg::meta::accumulate_task_gradients(
        leaves_, static_cast<int64_t>(tasks_.size()), threads_, scale, [&](int64_t t) {
          return mg::meta::maml_task_loss(*data_.model, data_.params, tasks_[static_cast<std::size_t>(t)], loss_,
                                          options_)
              .query_loss;
        });
    double total = 0.0;
    for (double l : losses) total += l;
    return total * scale;
  }

 private:
  const WorkloadSpec& spec_;
  WorkloadData data_;
  mg::meta::MamlOptions options_;
  mg::meta::LossFn loss_;
  std::vector<mg::meta::Task> tasks_;
  mg::TensorList leaves_;
  int threads_ = 1;
};

class MgBatched final : public MetaStep {
 public:
  explicit MgBatched(Workload workload)
      : spec_(workload_spec(workload)),
        data_(make_workload_data(workload)),
        options_(maml_options(spec_)),
        loss_(spec_.regression ? mg::meta::BatchedLossFn(mg::meta::batched_mse)
                               : mg::meta::BatchedLossFn(mg::meta::batched_cross_entropy)) {}

  double run() override {
    clear_grads(data_.params);
    const Tensor loss =
        mg::meta::maml_batched_loss(*data_.model, data_.params, data_.batch, loss_, options_).query_loss;
    loss.backward();
    return loss.item();
  }

 private:
  const WorkloadSpec& spec_;
  WorkloadData data_;
  mg::meta::MamlOptions options_;
  mg::meta::BatchedLossFn loss_;
};

}  // namespace

std::unique_ptr<MetaStep> make_mg_step(Workload workload, Path path) {
  if (path == Path::Batched) return std::make_unique<MgBatched>(workload);
  return std::make_unique<MgLooped>(workload, path == Path::Threads);
}

}  // namespace mg_bench
