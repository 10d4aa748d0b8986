// MAML meta-steps of bench/bench_meta.cpp's workloads (W-sin, W-omni, W-tf) on cuda:0: the same
// parameters and tasks (make_workload_data), moved to the GPU, through the library's own MAML
// entry points, looped over the tasks (one task's graph at a time, as meta::Trainer's looped
// path), task-batched (maml_batched_loss), and task-batched recorded once as a CUDA graph and
// replayed. Each loss is checked against the CPU's mg/looped
// loss before timing. The workload is also written to <out>/<workload>.safetensors (parameters
// under their names, tasks under task.*) with its CPU loss in the metadata, for torch_meta.py.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>

#include <metagrad/metagrad.h>

#include "bench/bench_meta/workloads.h"
#include "gpu_bench.h"

namespace mg_gpu_bench {
namespace {

using mg::Tensor;
using mg_bench::Workload;

const mg::Device kGpu("cuda:0");

mg_bench::Workload parse_workload(const std::string& name) {
  for (Workload w : {Workload::Sin, Workload::Omni, Workload::Tf})
    if (name == mg_bench::workload_spec(w).name) return w;
  throw std::runtime_error("unknown workload '" + name + "' (expected W-sin, W-omni or W-tf)");
}

mg::meta::MamlOptions maml_options(const mg_bench::WorkloadSpec& spec) {
  mg::meta::MamlOptions options;
  options.inner = {.steps = spec.inner_steps, .lr = spec.inner_lr, .second_order = true};
  return options;
}

// The workload with its meta-parameters as fresh leaves on the GPU and its tasks there too.
struct GpuWorkload {
  mg_bench::WorkloadData data;
  mg::nn::TensorDict params;
  mg::TensorList leaves;
  mg::meta::TaskBatch batch;
};

GpuWorkload to_gpu(mg_bench::WorkloadData data) {
  GpuWorkload g;
  for (const auto& [name, p] : data.params) {
    Tensor leaf = mg::kernels::to_device(p.detach(), kGpu);
    leaf.requires_grad_();
    g.params.insert(name, leaf);
    g.leaves.push_back(leaf);
  }
  g.batch = data.batch.to(kGpu);
  g.data = std::move(data);
  return g;
}

void clear_grads(const mg::TensorList& leaves) {
  for (const Tensor& p : leaves) p.set_grad(Tensor());
}

double looped_step(GpuWorkload& w, const mg_bench::WorkloadSpec& spec) {
  clear_grads(w.leaves);
  mg::meta::LossFn loss;
  if (spec.regression)
    loss = [](const Tensor& out, const Tensor& y) { return mg::nn::mse_loss(out, y); };
  else
    loss = [](const Tensor& out, const Tensor& y) { return mg::nn::cross_entropy(out, y); };
  const mg::meta::MamlOptions options = maml_options(spec);
  const int64_t tasks = w.batch.size();
  const double scale = 1.0 / static_cast<double>(tasks);
  // One thread: the GPU runs one stream, and the tasks' graphs are built one after another.
  const std::vector<double> losses = mg::meta::accumulate_task_gradients(w.leaves, tasks, 1, scale, [&](int64_t t) {
    return mg::meta::maml_task_loss(*w.data.model, w.params, w.batch.task(t), loss, options).query_loss;
  });
  double total = 0.0;
  for (double l : losses) total += l;
  return total * scale;
}

double batched_step(GpuWorkload& w, const mg_bench::WorkloadSpec& spec) {
  clear_grads(w.leaves);
  const mg::meta::BatchedLossFn loss = spec.regression ? mg::meta::BatchedLossFn(mg::meta::batched_mse)
                                                       : mg::meta::BatchedLossFn(mg::meta::batched_cross_entropy);
  const Tensor q = mg::meta::maml_batched_loss(*w.data.model, w.params, w.batch, loss, maml_options(spec)).query_loss;
  q.backward();
  return q.item();  // also waits for the GPU
}

// The batched step recorded once as a CUDA graph (mg::capture_graph) and replayed: the step
// without its thousands of launches, as meta::Trainer runs it with device_graph.
struct RecordedStep {
  std::unique_ptr<mg::DeviceGraph> graph;
  Tensor loss;
};

double graph_step(GpuWorkload& w, const mg_bench::WorkloadSpec& spec, RecordedStep& recorded) {
  if (recorded.graph == nullptr) {
    (void)batched_step(w, spec);  // warm-up outside the capture
    clear_grads(w.leaves);
    const mg::meta::BatchedLossFn loss = spec.regression ? mg::meta::BatchedLossFn(mg::meta::batched_mse)
                                                         : mg::meta::BatchedLossFn(mg::meta::batched_cross_entropy);
    recorded.graph = mg::capture_graph(kGpu, [&] {
      const Tensor q =
          mg::meta::maml_batched_loss(*w.data.model, w.params, w.batch, loss, maml_options(spec)).query_loss;
      q.backward();
      recorded.loss = q.detach();
    });
  }
  recorded.graph->replay();
  return recorded.loss.item();  // also waits for the GPU
}

// Milliseconds per step over at least 1 s (and 3 steps), after two warm-up steps.
template <typename Step>
double ms_per_step(Step&& step) {
  step();
  step();
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  int steps = 0;
  double elapsed = 0.0;
  while (steps < 3 || (elapsed < 1.0 && steps < 200)) {
    (void)step();
    ++steps;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  }
  return elapsed * 1e3 / steps;
}

void export_workload(const mg_bench::WorkloadData& data, double cpu_loss, const std::string& path) {
  mg::nn::TensorDict all;
  for (const auto& [name, p] : data.params) all.insert(name, p.detach());
  all.insert("task.support_x", data.batch.support_x);
  all.insert("task.support_y", data.batch.support_y);
  all.insert("task.query_x", data.batch.query_x);
  all.insert("task.query_y", data.batch.query_y);
  mg::nn::save_safetensors(path, all, {{"cpu_loss", std::to_string(cpu_loss)}});
}

}  // namespace

int run_meta(const std::string& name, const std::string& out_dir) {
  const Workload workload = parse_workload(name);
  const mg_bench::WorkloadSpec& spec = mg_bench::workload_spec(workload);
  const double cpu_loss = mg_bench::make_mg_step(workload, mg_bench::Path::Looped)->run();
  export_workload(mg_bench::make_workload_data(workload), cpu_loss, out_dir + "/" + name + ".safetensors");

  GpuWorkload w = to_gpu(mg_bench::make_workload_data(workload));
  std::ofstream csv(out_dir + "/meta_" + name + ".csv");
  csv << "workload,path,ms_per_step,loss,cpu_loss\n";
  int status = 0;
  RecordedStep recorded;
  for (const char* path : {"looped", "batched", "graph"}) {
    auto step = [&] {
      const std::string p(path);
      return p == "looped"    ? looped_step(w, spec)
             : p == "batched" ? batched_step(w, spec)
                              : graph_step(w, spec, recorded);
    };
    double loss = 0.0;
    try {
      loss = step();
    } catch (const mg::Error& e) {
      std::printf("RESULT meta %s/mg-cuda/%s error: %s\n", name.c_str(), path, e.what());
      status = 1;
      continue;
    }
    if (!std::isfinite(loss) || std::abs(loss - cpu_loss) > 1e-3 * std::abs(cpu_loss)) {
      std::printf("RESULT meta %s/mg-cuda/%s loss %.6f differs from the CPU's %.6f\n", name.c_str(), path, loss,
                  cpu_loss);
      status = 1;
      continue;
    }
    const double ms = ms_per_step(step);
    csv << name << "," << path << "," << ms << "," << loss << "," << cpu_loss << "\n";
    print_result("meta", name + "/mg-cuda/" + path, ms, "ms/step");
  }
  const mg::MemoryStats mem = mg::memory_stats(kGpu);
  std::printf("RESULT meta %s/mg-cuda/peak-allocated %.1f MiB\n", name.c_str(),
              static_cast<double>(mem.peak_allocated) / (1 << 20));
  return status;
}

}  // namespace mg_gpu_bench
