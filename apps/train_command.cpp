#include <atomic>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "../meta/learning_curve.h"
#include "../tensor/build_info.h"
#include "../tensor/error.h"
#include "../tensor/memory_stats.h"
#include "../tensor/threads.h"
#include "commands.h"
#include "run_spec.h"

namespace mg::app {

namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_interrupt(int) {
  g_stop.store(true);
  // A second Ctrl-C ends the program at once.
  std::signal(SIGINT, SIG_DFL);
}

struct TaskDefaults {
  int64_t meta_batch;
  int inner_steps;
  double inner_lr;
  double outer_lr;
  int64_t iterations;
  std::string eval_steps;
};

// The papers' settings, except for the number of iterations: sinusoid's full schedule is 70,000
// (--iterations 70000); the default is a shorter schedule that finishes in a few minutes.
TaskDefaults defaults_for(TaskKind task, meta::Algorithm algorithm) {
  switch (task) {
    case TaskKind::Sinusoid:
      return {25, 1, 0.01, 1e-3, 15000, "1,10"};
    case TaskKind::Omniglot:
      return {algorithm == meta::Algorithm::ProtoNet ? 8 : 32, 1, 0.4, 1e-3, 5000, ""};
    case TaskKind::Words:
      return {4, 3, 0.1, 1e-3, 3000, ""};
  }
  return {};
}

std::vector<FlagSpec> train_flags() {
  std::vector<FlagSpec> specs = run_spec_flags();
  const std::vector<FlagSpec> own{
      {"algo", "maml | fomaml | metasgd | anil | reptile | protonet | imaml (default maml)", false, "NAME"},
      {"meta-batch", "tasks per meta-iteration (default: sinusoid 25, omniglot 32 or protonet 8, words 4)", false, "N"},
      {"inner-steps", "inner-loop steps (default 1; words 3)", false, "N"},
      {"inner-lr", "inner-loop learning rate (default: sinusoid 0.01, omniglot 0.4, words 0.1)", false, "LR"},
      {"outer-lr", "meta-optimizer (Adam) learning rate (default 0.001)", false, "LR"},
      {"iterations", "meta-iterations (default: sinusoid 15000, omniglot 5000, words 3000)", false, "N"},
      {"log-interval", "iterations between progress lines (default: iterations / 50)", false, "N"},
      {"eval-interval", "iterations between validation runs and checkpoints (default: iterations / 20)", false, "N"},
      {"eval-tasks", "validation tasks per evaluation (default 100)", false, "N"},
      {"test-tasks", "held-out test tasks evaluated at the end (default 600)", false, "N"},
      {"eval-steps", "inner-step counts of the final test (default: sinusoid 1,10; else --inner-steps)", false, "LIST"},
      {"task-batched",
       "MAML family: run each meta-batch as one batched computation (per-task weights); the "
       "default for models without convolutions, except on the CPU for models of 16K parameters or more",
       true},
      {"tasks-looped", "run the tasks of a meta-batch one after another (the default for convolutional models)", true},
      {"tasks-in-turn",
       "a looped meta-batch runs one task at a time, each op on every thread (default: models of 16K "
       "parameters or more run their tasks on the threads, one task per thread)",
       true},
      {"inner-optimizer", "sgd | momentum | adam: the differentiable inner-loop update (default sgd)", false, "NAME"},
      {"per-step-lr", "MAML++: learn one inner learning rate per parameter tensor and step", true},
      {"multi-step-loss", "MAML++: query loss after every inner step, annealed to the last over N iterations", false,
       "N"},
      {"checkpoint-inner", "recompute inner steps in backward instead of storing them (less memory)", true},
      {"lambda", "imaml: proximal regularisation strength (default 1.0)", false, "X"},
      {"cg-steps", "imaml: conjugate-gradient steps (default 5)", false, "N"},
      {"seed", "initialisation and task-stream seed (default 0)", false, "N"},
      {"threads", "CPU threads (default: OpenMP's default)", false, "N"},
      {"device", "where the model and tasks live: cpu, cuda or cuda:N (default cpu)", false, "DEVICE"},
      {"device-graph",
       "with --device cuda: record the task-batched meta-step as a CUDA graph on the second iteration and replay "
       "it after (fixed shapes, no dropout)",
       true},
      {"out", "output folder (default runs/<task>-<algo>)", false, "DIR"},
      {"resume", "continue the run in --out from its last checkpoint", true},
      {"help", "this list", true},
  };
  specs.insert(specs.end(), own.begin(), own.end());
  return specs;
}

std::string inner_loop_description(meta::Algorithm algorithm, const meta::TrainerConfig& c,
                                   const std::string& inner_optimizer, const meta::Trainer& trainer) {
  std::ostringstream out;
  out << meta::algorithm_name(algorithm);
  if (algorithm == meta::Algorithm::ProtoNet) return out.str() + " (nearest class mean of embeddings, no inner loop)";
  out << ": " << c.inner_steps << " inner " << inner_optimizer << " step" << (c.inner_steps == 1 ? "" : "s")
      << " of lr " << c.inner_lr;
  if (algorithm == meta::Algorithm::IMaml)
    out << ", lambda " << c.imaml.lambda << ", " << c.imaml.cg_steps << " CG steps";
  if (trainer.task_batched())
    out << ", task-batched";
  else if (const int threads = trainer.task_threads(c.meta_batch); threads > 1)
    out << ", tasks looped on " << threads << " threads";
  else
    out << ", tasks looped";
  if (c.checkpoint_inner) out << ", inner steps recomputed in backward";
  if (c.per_step_lrs) out << ", learned per-step rates";
  if (c.multi_step_anneal > 0) out << ", multi-step loss annealed over " << c.multi_step_anneal << " iterations";
  return out.str();
}

// Few enough to list: which languages a words run never trains on.
std::string held_out_languages(const meta::TaskSampler* test) {
  const auto* words = dynamic_cast<const meta::WordsSampler*>(test);
  if (words == nullptr) return "";
  std::string out = "test languages";
  for (const std::string& language : words->languages()) out += " " + language;
  return out + "\n";
}

std::string device_description(Device device, const BuildInfo& build) {
  if (device.is_cpu()) return "cpu";
  for (const std::string& line : build.cuda_device_lines)
    if (line.rfind(device.str() + " ", 0) == 0) return line;
  return device.str();
}

std::string fixed(double v, int digits) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << v;
  return out.str();
}

std::string format_eval(const meta::EvalResult& r, bool classification) {
  if (classification)
    return fixed(100.0 * r.accuracy, 2) + "% +- " + fixed(100.0 * r.accuracy_ci95, 2) + "% (loss " + fixed(r.loss, 4) +
           ")";
  return "MSE " + fixed(r.loss, 4) + " +- " + fixed(r.loss_ci95, 4);
}

}  // namespace

int train_command(const std::vector<std::string>& args) {
  const std::vector<FlagSpec> specs = train_flags();
  const Arguments a(args, specs, "train");
  if (a.flag("help")) {
    std::cout << "usage: metagrad train [--flag value ...]\n\n" << usage_lines(specs);
    return 0;
  }
  if (a.has("threads")) set_num_threads(static_cast<int>(a.integer("threads", 1, 1)));

  RunSpec spec;
  spec.task = task_from_name(a.text("task", "sinusoid"));
  spec.apply_task_defaults();
  spec.algorithm = meta::algorithm_from_name(a.text("algo", "maml"));
  const TaskDefaults d = defaults_for(spec.task, spec.algorithm);
  spec.inner_steps = static_cast<int>(a.integer("inner-steps", d.inner_steps, 0));
  read_run_spec(a, spec);
  spec.seed = static_cast<uint64_t>(a.integer("seed", 0, 0));
  MG_CHECK(spec.algorithm != meta::Algorithm::ProtoNet || spec.task != TaskKind::Sinusoid,
           "--algo protonet classifies; use --task omniglot or --task words");

  meta::TrainerConfig config;
  config.algorithm = spec.algorithm;
  config.inner_steps = spec.inner_steps;
  config.inner_lr = a.real("inner-lr", d.inner_lr);
  config.outer_lr = a.real("outer-lr", d.outer_lr);
  config.meta_batch = a.integer("meta-batch", d.meta_batch, 1);
  config.iterations = a.integer("iterations", d.iterations, 0);
  config.log_interval = a.integer("log-interval", std::max<int64_t>(1, config.iterations / 50), 0);
  config.eval_interval = a.integer("eval-interval", std::max<int64_t>(1, config.iterations / 20), 0);
  config.eval_tasks = a.integer("eval-tasks", 100, 1);
  config.seed = spec.seed;
  config.loss = spec.task == TaskKind::Sinusoid ? meta::LossKind::Mse : meta::LossKind::CrossEntropy;
  // The trainer batches the tasks where that is faster (MAML family, no convolutions) unless told.
  config.batching = meta::Batching::Auto;
  MG_CHECK(!(a.flag("task-batched") && a.flag("tasks-looped")),
           "--task-batched and --tasks-looped contradict each other");
  if (a.flag("task-batched")) config.batching = meta::Batching::TaskBatched;
  if (a.flag("tasks-looped")) config.batching = meta::Batching::Looped;
  if (a.flag("tasks-in-turn")) config.task_threads = meta::TaskThreads::Off;
  const Device device(a.text("device", "cpu"));
  config.device_graph = a.flag("device-graph");
  MG_CHECK(!config.device_graph || device.is_cuda(), "--device-graph records CUDA work; it needs --device cuda");
  config.checkpoint_inner = a.flag("checkpoint-inner");
  config.per_step_lrs = a.flag("per-step-lr");
  config.multi_step_anneal = a.integer("multi-step-loss", 0, 0);
  const std::string inner_optimizer = a.text("inner-optimizer", "sgd");
  if (inner_optimizer == "momentum")
    config.inner_optimizer = meta::InnerOptimizer::Momentum;
  else if (inner_optimizer == "adam")
    config.inner_optimizer = meta::InnerOptimizer::Adam;
  else
    MG_CHECK(inner_optimizer == "sgd", "unknown --inner-optimizer '", inner_optimizer,
             "' (known: sgd, momentum, adam)");
  config.imaml.lambda = a.real("lambda", 1.0);
  config.imaml.cg_steps = static_cast<int>(a.integer("cg-steps", 5, 1));
  const int64_t test_tasks = a.integer("test-tasks", 600, 1);
  std::vector<int64_t> eval_steps = a.integer_list(
      "eval-steps", d.eval_steps.empty() ? std::vector<int64_t>{spec.inner_steps} : std::vector<int64_t>{1, 10});
  if (spec.algorithm == meta::Algorithm::ProtoNet) eval_steps = {0};
  const std::string out_dir =
      a.text("out", "runs/" + std::string(task_name(spec.task)) + "-" + meta::algorithm_name(spec.algorithm));
  config.output_dir = out_dir;
  config.metadata = spec.to_metadata();
  config.metadata["run.command"] = "metagrad train " + a.given();
  config.stop_flag = &g_stop;

  // Data first: a bad folder is reported before anything is written.
  const TaskSource source(spec);
  const uint64_t stream = spec.seed * 3;
  std::unique_ptr<meta::TaskSampler> train_sampler = source.sampler(Part::Train, stream);
  std::unique_ptr<meta::TaskSampler> val_sampler = source.sampler(Part::Val, stream + 1, spec.eval_queries);
  std::unique_ptr<meta::TaskSampler> test_sampler = source.sampler(Part::Test, stream + 2, spec.eval_queries);
  std::shared_ptr<nn::Module> model = build_model(spec, spec.seed);
  // Built on the CPU from the seed, then moved: the same initial weights on every device.
  if (!device.is_cpu()) model->to(device);

  const std::filesystem::path dir(out_dir);
  const std::filesystem::path last = dir / "last.safetensors";
  meta::Trainer trainer(*model, *train_sampler, val_sampler.get(), config, &std::cout);
  if (a.flag("resume")) {
    MG_CHECK(std::filesystem::exists(last), "--resume: no checkpoint ", last.string(),
             " (train without --resume to start a run there)");
    trainer.resume(last.string());
  } else {
    std::filesystem::create_directories(dir);
    std::filesystem::remove(dir / "metrics.csv");
    std::filesystem::remove(dir / "best.safetensors");
    std::filesystem::remove(last);
  }

  const BuildInfo build = build_info();
  std::int64_t params = 0;
  for (const auto& [name, p] : model->named_parameters()) params += p.numel();
  std::ostringstream summary;
  summary << "metagrad train " << a.given() << "\n"
          << spec.describe() << " (" << params << " parameters)\n"
          << "data " << source.describe_data() << "\n"
          << held_out_languages(test_sampler.get()) << "algorithm "
          << inner_loop_description(spec.algorithm, config, inner_optimizer, trainer) << ", meta-batch "
          << config.meta_batch << ", outer Adam lr " << config.outer_lr << ", " << config.iterations
          << " iterations, seed " << spec.seed << "\n"
          << "batchnorm " << batchnorm_description(spec) << "\n"
          << "build " << build.compiler << " " << build.build_type << ", cpu kernels " << build.simd << ", "
          << num_threads() << " threads, cuda " << (build.cuda_compiled ? "compiled" : "not compiled") << "\n"
          << "device " << device_description(device, build)
          << (config.device_graph ? ", meta-step replayed as a graph" : "") << "\n"
          << "output " << out_dir
          << (a.flag("resume") ? " (resumed at iteration " + std::to_string(trainer.iteration()) + ")" : "") << "\n";
  std::cout << summary.str() << std::endl;
  const std::size_t header_size = summary.str().size();

  g_stop.store(false);
  std::signal(SIGINT, on_interrupt);
  reset_peak_memory_stats(device);
  const bool finished = trainer.train();
  std::signal(SIGINT, SIG_DFL);

  const bool classification = source.classification();
  const std::filesystem::path metrics = dir / "metrics.csv";
  if (std::filesystem::exists(metrics))
    meta::write_learning_curve_svg(metrics.string(), (dir / "learning_curve.svg").string(),
                                   std::string(task_name(spec.task)) + " " + meta::algorithm_name(spec.algorithm));
  summary << "iterations " << trainer.iteration() << "/" << config.iterations << " in "
          << fixed(trainer.train_seconds(), 1) << " s of training, peak tensor memory "
          << fixed(static_cast<double>(memory_stats(device).peak_allocated) / (1 << 20), 1) << " MiB\n";
  if (val_sampler && std::isfinite(trainer.best_eval_loss()))
    summary << "best validation " << format_eval(trainer.best_eval(), classification) << "\n";
  if (!finished) {
    summary << "interrupted: resume with the same command and --resume\n";
    std::ofstream(dir / "summary.txt") << summary.str();
    std::cout << "interrupted at iteration " << trainer.iteration() << "; " << last.string()
              << " holds it. Continue with --resume.\n";
    return kExitInterrupted;
  }

  if (test_sampler) {
    // The final test uses the best validation checkpoint when there is one.
    std::string weights = "last";
    if (std::filesystem::exists(dir / "best.safetensors") && val_sampler) {
      const int64_t at = trainer.load_weights((dir / "best.safetensors").string());
      weights = "best (iteration " + std::to_string(at) + ")";
    }
    summary << "test on " << test_tasks << " held-out tasks, " << weights << " weights:\n";
    for (int64_t steps : eval_steps) {
      const meta::EvalResult r = trainer.evaluate_on(*test_sampler, test_tasks, static_cast<int>(steps));
      if (spec.algorithm == meta::Algorithm::ProtoNet)
        summary << "  nearest prototype: " << format_eval(r, classification) << "\n";
      else
        summary << "  after " << steps << " inner step" << (steps == 1 ? "" : "s") << ": "
                << format_eval(r, classification) << "\n";
    }
  }
  std::ofstream(dir / "summary.txt") << summary.str();
  std::cout << "\n"
            << summary.str().substr(header_size) << "wrote " << (dir / "summary.txt").string()
            << ", metrics.csv, learning_curve.svg, best/last.safetensors\n";
  return 0;
}

}  // namespace mg::app
