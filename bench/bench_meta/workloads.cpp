#include "workloads.h"

#include <cstdlib>
#include <string>

#ifdef MG_BENCH_HAVE_TORCH
#include <ATen/Parallel.h>
#endif

namespace mg_bench {
namespace {

mg::meta::ModelSpec model_spec(const char* name, int64_t outputs) {
  mg::meta::ModelSpec spec;
  spec.name = name;
  spec.outputs = outputs;
  return spec;  // conv4: 1x28x28, 64 channels, transductive BatchNorm; transformer: seq 16, d 64
}

// Classification labels 0..ways-1, each repeated per_class times, for every task: [T, ways * per_class].
mg::Tensor class_labels(int64_t tasks, int64_t ways, int64_t per_class) {
  std::vector<int64_t> labels;
  labels.reserve(static_cast<std::size_t>(tasks * ways * per_class));
  for (int64_t t = 0; t < tasks; ++t)
    for (int64_t c = 0; c < ways; ++c)
      for (int64_t i = 0; i < per_class; ++i) labels.push_back(c);
  return mg::tensor(labels, {tasks, ways * per_class});
}

// Token sequences of random lengths in [len / 2, len], padded with 0 (the model's pad id), so the
// attention and pooling masks do real work.
mg::Tensor token_sequences(int64_t tasks, int64_t count, int64_t len, mg::Generator& gen) {
  mg::Tensor tokens = mg::randint(1, 256, {tasks, count, len}, mg::kCPU, &gen).contiguous();
  const mg::Tensor lengths = mg::randint(len / 2, len + 1, {tasks * count}, mg::kCPU, &gen).contiguous();
  int64_t* data = tokens.data_ptr<int64_t>();
  const int64_t* n = lengths.data_ptr<int64_t>();
  for (int64_t s = 0; s < tasks * count; ++s)
    for (int64_t j = n[s]; j < len; ++j) data[s * len + j] = 0;
  return tokens;
}

}  // namespace

const WorkloadSpec& workload_spec(Workload workload) {
  static const WorkloadSpec sin{"W-sin", model_spec("mlp", 1), 25, 1, 0.01, true};
  static const WorkloadSpec omni{"W-omni", model_spec("conv4", 5), 32, 1, 0.4, false};
  static const WorkloadSpec tf{"W-tf", model_spec("transformer", 5), 4, 3, 0.1, false};
  switch (workload) {
    case Workload::Sin:
      return sin;
    case Workload::Omni:
      return omni;
    case Workload::Tf:
      break;
  }
  return tf;
}

const char* path_name(Path path) {
  switch (path) {
    case Path::Looped:
      return "looped";
    case Path::Threads:
      return "threads";
    case Path::Batched:
      return "batched";
  }
  return "?";
}

const std::vector<Variant>& variants() {
  static const std::vector<Variant> all = [] {
    std::vector<Variant> v;
    auto add = [&](Workload w, Library lib, Path path) {
      std::string name =
          std::string(workload_spec(w).name) + (lib == Library::Mg ? "/mg/" : "/torch/") + path_name(path);
      v.push_back({w, lib, path, std::move(name)});
    };
    for (Workload w : {Workload::Sin, Workload::Omni, Workload::Tf}) {
      add(w, Library::Mg, Path::Looped);
      add(w, Library::Mg, Path::Threads);
      add(w, Library::Mg, Path::Batched);
#ifdef MG_BENCH_HAVE_TORCH
      add(w, Library::Torch, Path::Looped);
      // Only the MLP has an obvious batched form in LibTorch (bmm); conv and attention per task
      // would need grouped convolutions or vmap, which is a different program.
      if (w == Workload::Sin) add(w, Library::Torch, Path::Batched);
#endif
    }
    return v;
  }();
  return all;
}

const Variant* find_variant(const std::string& name) {
  for (const auto& v : variants())
    if (v.name == name) return &v;
  return nullptr;
}

WorkloadData make_workload_data(Workload workload) {
  const WorkloadSpec& spec = workload_spec(workload);
  mg::Generator gen(7);
  WorkloadData d;
  d.model = mg::meta::make_model(spec.model, &gen);
  d.params = d.model->named_parameters();
  const int64_t T = spec.meta_batch;
  switch (workload) {
    case Workload::Sin: {
      const mg::meta::SinusoidSampler sampler({.shots = 10, .queries = 10}, 0);
      d.batch = sampler.sample_batch(gen, T);
      break;
    }
    case Workload::Omni: {
      // 5-way 1-shot, 15 queries per class; Omniglot's images are in [0, 1].
      d.batch.support_x = mg::rand({T, 5, 1, 28, 28}, mg::kFloat32, mg::kCPU, &gen);
      d.batch.support_y = class_labels(T, 5, 1);
      d.batch.query_x = mg::rand({T, 75, 1, 28, 28}, mg::kFloat32, mg::kCPU, &gen);
      d.batch.query_y = class_labels(T, 5, 15);
      break;
    }
    case Workload::Tf: {
      // 5-way 5-shot, 5 queries per class, sequences of up to 16 tokens.
      const int64_t len = spec.model.seq_len;
      d.batch.support_x = token_sequences(T, 25, len, gen);
      d.batch.support_y = class_labels(T, 5, 5);
      d.batch.query_x = token_sequences(T, 25, len, gen);
      d.batch.query_y = class_labels(T, 5, 5);
      break;
    }
  }
  return d;
}

std::unique_ptr<MetaStep> make_step(const Variant& variant) {
#ifdef MG_BENCH_HAVE_TORCH
  if (variant.library == Library::Torch) return make_torch_step(variant.workload, variant.path);
#endif
  return make_mg_step(variant.workload, variant.path);
}

int configure_threads() {
  int n = mg::num_threads();
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    const int requested = std::atoi(env);
    if (requested >= 1) n = requested;
  }
  mg::set_num_threads(n);
#ifdef MG_BENCH_HAVE_TORCH
  at::set_num_threads(n);
#endif
  return n;
}

}  // namespace mg_bench
