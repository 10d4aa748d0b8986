#include <iomanip>
#include <iostream>

#include "../nn/safetensors.h"
#include "../tensor/error.h"
#include "../tensor/threads.h"
#include "commands.h"
#include "run_spec.h"

namespace mg::app {

namespace {

std::vector<FlagSpec> eval_flags() {
  std::vector<FlagSpec> specs{{"checkpoint", "a checkpoint written by 'metagrad train' (required)", false, "FILE"}};
  for (const FlagSpec& f : run_spec_flags())
    if (f.name != "model" && f.name != "hidden" && f.name != "layers" && f.name != "bn-mode") specs.push_back(f);
  const std::vector<FlagSpec> own{
      {"model", "the checkpoint's model unless given (must match its parameters)", false, "NAME"},
      {"hidden", "model width (default: the checkpoint's)", false, "N"},
      {"layers", "model depth (default: the checkpoint's)", false, "N"},
      {"eval-tasks", "new tasks to evaluate on (default 600)", false, "N"},
      {"eval-steps", "inner-step counts to report (default: the training run's; sinusoid 1,10)", false, "LIST"},
      {"inner-lr", "inner-loop learning rate (default: the training run's)", false, "LR"},
      {"seed", "task-stream seed (default 12345)", false, "N"},
      {"threads", "CPU threads", false, "N"},
      {"help", "this list", true},
  };
  specs.insert(specs.end(), own.begin(), own.end());
  return specs;
}

double config_number(const std::map<std::string, std::string>& metadata, const std::string& key, double fallback) {
  // The trainer's one-line config, "algorithm=maml inner_steps=1 inner_lr=0.01 ...".
  const auto it = metadata.find("trainer.config");
  if (it == metadata.end()) return fallback;
  const std::string needle = key + "=";
  const auto at = it->second.find(needle);
  if (at == std::string::npos) return fallback;
  return std::stod(it->second.substr(at + needle.size()));
}

}  // namespace

int eval_command(const std::vector<std::string>& args) {
  const std::vector<FlagSpec> specs = eval_flags();
  const Arguments a(args, specs, "eval");
  if (a.flag("help")) {
    std::cout << "usage: metagrad eval --checkpoint FILE [--flag value ...]\n\n"
              << "Draws tasks from every class of --data unless a split is named.\n\n"
              << usage_lines(specs);
    return 0;
  }
  if (a.has("threads")) set_num_threads(static_cast<int>(a.integer("threads", 1, 1)));
  const auto path = a.text("checkpoint");
  MG_CHECK(path.has_value(), "--checkpoint FILE is required");
  const nn::SafetensorsFile file = nn::load_safetensors(*path);
  RunSpec spec = RunSpec::from_metadata(file.metadata, *path);
  if (a.has("task")) {
    const TaskKind task = task_from_name(*a.text("task"));
    MG_CHECK(task == spec.task, *path, " was trained on ", task_name(spec.task), " tasks, not ", task_name(task));
  }
  // A new folder means new classes: all of them, unless a split is named.
  const bool data_given = a.has("data");
  read_run_spec(a, spec);
  if (data_given && !a.has("split") && !a.has("test-classes")) {
    spec.split = "all";
    spec.test_classes.clear();
  }

  meta::TrainerConfig config;
  config.algorithm = spec.algorithm;
  config.inner_steps = spec.inner_steps;
  config.inner_lr = a.real("inner-lr", config_number(file.metadata, "inner_lr", 0.01));
  config.loss = spec.task == TaskKind::Sinusoid ? meta::LossKind::Mse : meta::LossKind::CrossEntropy;
  config.imaml.lambda = config_number(file.metadata, "lambda", 1.0);
  config.anil_head_prefix = "head.";
  const int64_t tasks = a.integer("eval-tasks", 600, 1);
  std::vector<int64_t> steps =
      a.integer_list("eval-steps", spec.task == TaskKind::Sinusoid ? std::vector<int64_t>{1, 10}
                                                                   : std::vector<int64_t>{spec.inner_steps});
  if (spec.algorithm == meta::Algorithm::ProtoNet) steps = {0};
  const uint64_t seed = static_cast<uint64_t>(a.integer("seed", 12345, 0));

  const TaskSource source(spec);
  const Part part = spec.split != "all" || !spec.test_classes.empty() ? Part::Test : Part::All;
  std::unique_ptr<meta::TaskSampler> sampler = source.sampler(part, seed, spec.eval_queries);
  MG_CHECK(sampler != nullptr, "the chosen split has no test classes");
  std::shared_ptr<nn::Module> model = build_model(spec, 0);
  meta::Trainer trainer(*model, *sampler, sampler.get(), config);
  const int64_t at = trainer.load_weights(*path);

  std::cout << "checkpoint " << *path << " (" << meta::algorithm_name(spec.algorithm) << ", iteration " << at << ")\n"
            << spec.describe() << "\n"
            << "data " << source.describe_data()
            << (!source.classification() ? ""
                : part == Part::All      ? ", every class"
                                         : ", the test classes")
            << "\n"
            << tasks << " tasks, inner lr " << config.inner_lr << "\n";
  const bool classification = source.classification();
  std::cout << std::left << std::setw(13) << "inner steps"
            << (classification ? "accuracy (95% interval)" : "MSE (95% interval)") << "\n";
  std::cout << std::fixed;
  for (int64_t s : steps) {
    const meta::EvalResult r = trainer.evaluate_on(*sampler, tasks, static_cast<int>(s));
    std::cout << std::setw(13) << s << std::setprecision(classification ? 2 : 4);
    if (classification)
      std::cout << 100.0 * r.accuracy << "% +- " << 100.0 * r.accuracy_ci95 << "%";
    else
      std::cout << r.loss << " +- " << r.loss_ci95;
    std::cout << "\n";
  }
  return 0;
}

}  // namespace mg::app
