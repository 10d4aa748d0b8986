#pragma once
// The reference meta-steps of bench_meta (W-sin, W-omni, W-tf), their variants (library, looped
// or task-batched) and the data they share. Both libraries start from the same numbers: the
// initial parameters come from metagrad's models (make_model, PyTorch's init schemes) and the
// tasks from one seeded generator, and LibTorch gets copies of them, so that the two sides
// compute the same meta-step and their losses can be checked against each other.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <metagrad/metagrad.h>

namespace mg_bench {

enum class Workload { Sin, Omni, Tf };
enum class Library { Mg, Torch };
// Looped: tasks in turn, each op on every thread; Threads: tasks on the threads, one task per
// thread (meta/task_parallel.h); Batched: one task-batched computation.
enum class Path { Looped, Threads, Batched };
const char* path_name(Path path);  // "looped", "threads", "batched"

struct WorkloadSpec {
  const char* name;  // "W-sin", ...
  mg::meta::ModelSpec model;
  int64_t meta_batch;
  int inner_steps;
  double inner_lr;
  bool regression;  // MSE on real targets; otherwise cross-entropy on int64 labels
};
const WorkloadSpec& workload_spec(Workload workload);

struct Variant {
  Workload workload;
  Library library;
  Path path;
  std::string name;  // "<workload>/<mg|torch>/<looped|threads|batched>", filter-friendly
};
// The variants this binary measures, in the order they run (mg looped first in each workload:
// it is the reference the others are checked against). Without LibTorch, metagrad's only.
const std::vector<Variant>& variants();
const Variant* find_variant(const std::string& name);

struct WorkloadData {
  std::shared_ptr<mg::nn::Module> model;
  mg::nn::TensorDict params;  // the meta-parameters (leaves that require grad)
  mg::meta::TaskBatch batch;  // [T, ...] fields
};
// Deterministic: every call builds the same parameters and tasks.
WorkloadData make_workload_data(Workload workload);

// One meta-step of one variant, with its model, parameters and tasks built by the constructor
// (outside any timing). run() is forward, inner steps and query loss over the meta-batch and
// the backward pass into the meta-parameters' gradients (cleared first, so that every step does
// the same work); it returns the mean query loss over the tasks.
class MetaStep {
 public:
  virtual ~MetaStep() = default;
  virtual double run() = 0;
};

std::unique_ptr<MetaStep> make_mg_step(Workload workload, Path path);
#ifdef MG_BENCH_HAVE_TORCH
std::unique_ptr<MetaStep> make_torch_step(Workload workload, Path path);
#endif
std::unique_ptr<MetaStep> make_step(const Variant& variant);

// Gives metagrad and LibTorch the same number of threads: OMP_NUM_THREADS when set, otherwise
// OpenMP's default. Returns it.
int configure_threads();

// bench_meta --peak-memory: one fresh process per variant, one table (peak_memory.cpp).
int run_peak_memory_table();
// bench_meta --peak-one <name>: the measurement inside that process; prints one line for the parent.
int run_peak_one(const std::string& name);

}  // namespace mg_bench
