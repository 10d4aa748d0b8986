// Whole MAML meta-steps, metagrad beside LibTorch in the same binary (when LibTorch was found:
// MG_BENCH_HAVE_TORCH), float32, second order (inner gradients with create_graph, the outer loss
// differentiated through them):
//   W-sin   MLP 1-40-40-1 (ReLU), 25 tasks of K=10 support + 10 query, 1 inner SGD step lr 0.01, MSE.
//   W-omni  conv4 (4 x conv3x3 64 + BatchNorm with batch statistics + ReLU + max-pool 2, linear
//           head) on 1x28x28, 5-way 1-shot with 15 queries per class, 32 tasks, 1 step lr 0.4,
//           cross-entropy.
//   W-tf    transformer classifier (token embedding, learned positions, 2 pre-norm layers,
//           d_model 64, 4 heads, ff 128, padded sequences of 16, masked mean-pool, linear head),
//           5-way 5-shot with 5 queries per class, 4 tasks, 3 steps lr 0.1, cross-entropy.
// A meta-step is forward, inner steps and query loss over the whole meta-batch plus the backward
// pass into the meta-parameters; the outer optimizer and task sampling are not part of it (the
// tasks are made once, outside the timed loop). Variants, named <workload>/<mg|torch>/<path>:
//   mg/looped   maml_task_loss per task, backward per task (meta::Trainer's Batching::Looped with
//               TaskThreads::Off: each op on every thread);
//   mg/threads  the same loop with the tasks on the threads, one task per thread, per-task
//               gradients summed in task order (meta/task_parallel.h; the trainer's default loop);
//   mg/batched  maml_batched_loss over the meta-batch (Batching::TaskBatched);
//   torch/looped, torch/batched (W-sin only, bmm): the same computation written functionally.
//   mg/<path>/matmuls_only, openblas/<path>/matmuls_only: the matrix products of one mg/<path>
//               step alone (bench_meta/matmul_replay.h), replayed through metagrad's GEMM and through
//               OpenBLAS (checked against each other first), for the fastest path of each workload:
//               the step's time left once everything else is free, and what OpenBLAS would make of it.
// Both libraries start from the same parameters and tasks. Before timing, each variant's loss is
// checked against mg/looped's: the two metagrad paths within 1e-4 relative, LibTorch within
// 1e-3 (another library's rounding); a mismatch is reported as the benchmark's error.
//   OMP_NUM_THREADS=1 ./bench_meta [--benchmark_filter=W-tf]
//   OMP_NUM_THREADS=1 ./bench_meta --matmul-shapes W-tf   (those products by shape, each group timed)
// Both libraries run on OMP_NUM_THREADS threads (OpenMP's default when unset).
//
// Peak memory: ./bench_meta --peak-memory runs every variant in a fresh process (this binary
// re-executed with --peak-one <name>). The child builds the workload (parameters, tasks, model),
// records VmRSS, resets VmHWM to it (/proc/self/clear_refs), runs 3 meta-steps and reports
// VmHWM minus that baseline: the most memory the meta-steps needed on top of their inputs, first
// use of each library's pools and caches included, measured by the kernel alike for both. For
// metagrad it also reports the allocator's peak tensor bytes over the same steps
// (tensor/memory_stats.h), which excludes the allocator's cache and the tape's own objects.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "bench/bench_meta/matmul_replay.h"
#include "bench/bench_meta/workloads.h"

namespace {

using mg_bench::Library;
using mg_bench::MetaStep;
using mg_bench::Path;
using mg_bench::Variant;
using mg_bench::Workload;

// Built once per variant, however often Google Benchmark calls the function.
struct Prepared {
  std::unique_ptr<MetaStep> step;
  std::string error;
};

// mg/looped's loss on each workload: what every other variant must reproduce. mg/looped runs
// first and records its own; a variant filtered in without it has the reference computed here.
std::map<Workload, double>& reference_losses() {
  static std::map<Workload, double> losses;
  return losses;
}

double reference_loss(Workload workload) {
  auto& losses = reference_losses();
  auto it = losses.find(workload);
  if (it == losses.end()) it = losses.emplace(workload, mg_bench::make_mg_step(workload, Path::Looped)->run()).first;
  return it->second;
}

Prepared prepare(const Variant& v) {
  Prepared p;
  try {
    p.step = mg_bench::make_step(v);
    const double loss = p.step->run();  // also the warm-up step
    if (v.library == Library::Mg && v.path == Path::Looped) reference_losses().emplace(v.workload, loss);
    const double reference = reference_loss(v.workload);
    const double tolerance = v.library == Library::Mg ? 1e-4 : 1e-3;
    if (!std::isfinite(loss) || std::abs(loss - reference) > tolerance * std::abs(reference))
      p.error = "loss " + std::to_string(loss) + " differs from mg/looped's " + std::to_string(reference);
  } catch (const std::exception& e) {
    p.error = e.what();
  }
  return p;
}

void run_variant(benchmark::State& state, const Variant* v) {
  static std::map<std::string, Prepared> prepared;
  auto it = prepared.find(v->name);
  if (it == prepared.end()) it = prepared.emplace(v->name, prepare(*v)).first;
  if (!it->second.error.empty()) {
    state.SkipWithError(it->second.error.c_str());
    return;
  }
  MetaStep& step = *it->second.step;
  const int64_t flops_before = mg::cpu_matmul_flops_on_this_thread();
  for (auto _ : state) benchmark::DoNotOptimize(step.run());
  state.counters["meta_it/s"] = benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
  // The step's matrix-product arithmetic, where this thread calls all of it (not with the tasks
  // on threads): its time at the FMA peak is a floor under the step's.
  if (v->library == Library::Mg && v->path != Path::Threads) {
    const double flops = static_cast<double>(mg::cpu_matmul_flops_on_this_thread() - flops_before);
    state.counters["matmul_GFLOP"] = flops * 1e-9 / static_cast<double>(state.iterations());
  }
}

// <workload>/<mg|openblas>/<path>/matmuls_only: the products of one step of mg/<path> alone
// (bench_meta/matmul_replay.h), through metagrad's GEMM and OpenBLAS, each checked against the
// other first. Set against mg/<path> in the same run: the share of the step that is products.
enum class Gemm { Mg, OpenBlas };

struct ReplayCase {
  Workload workload;
  Path path;
  Gemm gemm;
  std::string name;
};

void run_replay(benchmark::State& state, const ReplayCase* r) {
  static std::map<std::pair<Workload, Path>, std::pair<std::unique_ptr<mg_bench::MatmulReplay>, std::string>> made;
  auto& [replay, error] = made[{r->workload, r->path}];
  if (!replay && error.empty()) {
    try {
      replay = std::make_unique<mg_bench::MatmulReplay>(r->workload, r->path);
#ifdef MG_BENCH_HAVE_OPENBLAS
      const double difference = replay->max_relative_difference();
      if (!(difference < 1e-4)) error = "replayed products differ by " + std::to_string(difference);
#endif
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  if (!error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  for (auto _ : state) {
#ifdef MG_BENCH_HAVE_OPENBLAS
    if (r->gemm == Gemm::OpenBlas) {
      replay->run_openblas();
      continue;
    }
#endif
    replay->run_mg();
  }
  state.counters["calls"] = static_cast<double>(replay->calls().size());
  state.counters["GFLOP/s"] = benchmark::Counter(replay->flops() * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

const std::vector<ReplayCase>& replay_cases() {
  static const std::vector<ReplayCase> cases = [] {
    std::vector<ReplayCase> c;
    // Each workload's fastest metagrad path on one thread.
    for (auto [w, path] : {std::pair{Workload::Sin, Path::Batched}, std::pair{Workload::Omni, Path::Looped},
                           std::pair{Workload::Tf, Path::Looped}}) {
      std::vector<Gemm> gemms{Gemm::Mg};
#ifdef MG_BENCH_HAVE_OPENBLAS
      gemms.push_back(Gemm::OpenBlas);
#endif
      for (Gemm g : gemms)
        c.push_back({w, path, g,
                     std::string(mg_bench::workload_spec(w).name) + (g == Gemm::Mg ? "/mg/" : "/openblas/") +
                         mg_bench::path_name(path) + "/matmuls_only"});
    }
    return c;
  }();
  return cases;
}

// bench_meta --matmul-shapes <W-sin|W-omni|W-tf>: the products of one step of the workload's
// replayed path, grouped by shape and layout, each group timed through both libraries.
int print_matmul_shapes(const char* workload_name) {
  for (const ReplayCase& r : replay_cases()) {
    if (std::strcmp(mg_bench::workload_spec(r.workload).name, workload_name) != 0) continue;
    mg_bench::configure_threads();
    mg_bench::MatmulReplay(r.workload, r.path).print_shape_table();
    return 0;
  }
  std::fprintf(stderr, "--matmul-shapes: no workload named %s\n", workload_name);
  return 2;
}

void register_benchmarks() {
  for (const Variant& v : mg_bench::variants()) {
    auto* b =
        benchmark::RegisterBenchmark(v.name.c_str(), run_variant, &v)->UseRealTime()->Unit(benchmark::kMillisecond);
    // W-omni takes seconds (task-batched metagrad: over a minute) per meta-step; one timed step
    // after the checked warm-up one keeps the binary's run within minutes.
    if (v.workload == Workload::Omni) b->Iterations(1);
    // W-tf takes about a second: a longer minimum than the default gives more than one step.
    if (v.workload == Workload::Tf) b->MinTime(3.0);
  }
  for (const ReplayCase& r : replay_cases()) {
    auto* b =
        benchmark::RegisterBenchmark(r.name.c_str(), run_replay, &r)->UseRealTime()->Unit(benchmark::kMillisecond);
    if (r.workload == Workload::Omni) b->Iterations(2);
  }
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--peak-memory") == 0) return mg_bench::run_peak_memory_table();
    if (std::strcmp(argv[i], "--peak-one") == 0 && i + 1 < argc) return mg_bench::run_peak_one(argv[i + 1]);
    if (std::strcmp(argv[i], "--matmul-shapes") == 0 && i + 1 < argc) return print_matmul_shapes(argv[i + 1]);
  }
#if defined(__GLIBC__)
  // LibTorch's CPU tensors come from glibc's malloc. With its default thresholds a large tensor
  // may be a fresh mmap, page-faulted in on every step and unmapped when freed: W-omni's LibTorch
  // step measured 10.6 s that way in a fresh process and 2.8 s with the thresholds below (and
  // 3.6 s after other variants had grown the heap). Timing LibTorch at its best, whatever ran
  // before it, takes large blocks from the heap and keeps freed memory. metagrad's tensors come
  // from its own caching allocator and do not notice.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  const int threads = mg_bench::configure_threads();
  benchmark::AddCustomContext("threads (metagrad and LibTorch)", std::to_string(threads));
  register_benchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
