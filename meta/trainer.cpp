#include "trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <ostream>
#include <sstream>

#include "../autograd/grad_mode.h"
#include "../autograd/ops.h"
#include "../nn/losses.h"
#include "../nn/safetensors.h"
#include "../tensor/error.h"
#include "../tensor/shape.h"
#include "maml.h"
#include "protonet.h"
#include "reptile.h"
#include "task_batched.h"
#include "task_parallel.h"

namespace mg::meta {

namespace {

constexpr const char* kModelPrefix = "model.";
constexpr const char* kOptimizerPrefix = "optimizer.";
constexpr const char* kLrsPrefix = "lrs.";
constexpr const char* kTrainerPrefix = "trainer.";

struct MeanCi {
  double mean = 0.0;
  double ci95 = 0.0;
};

MeanCi mean_ci95(const std::vector<double>& values) {
  MeanCi out;
  if (values.empty()) return out;
  const double n = static_cast<double>(values.size());
  for (double v : values) out.mean += v;
  out.mean /= n;
  if (values.size() < 2) return out;
  double ss = 0.0;
  for (double v : values) ss += (v - out.mean) * (v - out.mean);
  out.ci95 = 1.96 * std::sqrt(ss / (n - 1.0)) / std::sqrt(n);
  return out;
}

std::string config_summary(const TrainerConfig& c) {
  std::ostringstream out;
  out << "algorithm=" << algorithm_name(c.algorithm) << " inner_steps=" << c.inner_steps << " inner_lr=" << c.inner_lr
      << " outer_lr=" << c.outer_lr << " meta_batch=" << c.meta_batch << " iterations=" << c.iterations
      << " loss=" << loss_kind_name(c.loss) << " seed=" << c.seed << " batching=" << static_cast<int>(c.batching)
      << " inner_optimizer=" << static_cast<int>(c.inner_optimizer) << " checkpoint_inner=" << c.checkpoint_inner
      << " per_step_lrs=" << c.per_step_lrs << " multi_step_anneal=" << c.multi_step_anneal;
  if (c.algorithm == Algorithm::Anil) out << " head=" << c.anil_head_prefix;
  return out.str();
}

uint64_t parse_u64(const nn::MetadataReader& in, const std::string& key) {
  const std::string& text = in.text(key);
  std::size_t used = 0;
  uint64_t value = 0;
  try {
    value = std::stoull(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  MG_CHECK(used == text.size() && !text.empty(), in.context(), ": ", in.full_key(key), " is not an unsigned integer: '",
           text, "'");
  return value;
}

std::string format_seconds(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto total = static_cast<int64_t>(s + 0.5);
  std::ostringstream out;
  if (total >= 3600) out << total / 3600 << "h";
  if (total >= 60) out << (total / 60) % 60 << "m";
  out << total % 60 << "s";
  return out.str();
}

// A task-batched convolutional meta-step holds every task's activations at once (W-omni: 2.1 GiB
// against 87 MiB looped) and ran 3.8x slower than the loop (bench/RESULTS.md), so
// Batching::Auto keeps models with convolutions looped.
bool has_convolution(const nn::Module& module) {
  if (module.type_name() == "Conv2d") return true;
  for (const auto& [name, child] : module.children())
    if (has_convolution(*child)) return true;
  return false;
}

// sum += terms, entry by entry, outside the tape (per-task updates that are not gradients of a
// recorded loss: Reptile's directions, iMAML's implicit gradients).
void add_into(nn::TensorDict& sum, const nn::TensorDict& terms) {
  NoGradGuard no_grad;
  for (const auto& [name, t] : terms) {
    if (sum.contains(name))
      sum.set(name, sum.at(name) + t);
    else
      sum.insert(name, t.clone());
  }
}

void set_grads(const nn::TensorDict& params, const nn::TensorDict& sum, double scale) {
  NoGradGuard no_grad;
  for (const auto& [name, g] : sum) params.at(name).set_grad(g * scale);
}

// Classes in a task: its class names, or one more than its largest label.
int64_t task_ways(const Task& task) {
  if (!task.class_names.empty()) return static_cast<int64_t>(task.class_names.size());
  MG_CHECK(task.support_y.dtype() == kInt64, "protonet: needs int64 class labels, got ",
           dtype_name(task.support_y.dtype()));
  return static_cast<int64_t>(amax(task.support_y).item()) + 1;
}

}  // namespace

Algorithm algorithm_from_name(std::string_view name) {
  for (Algorithm a : {Algorithm::Maml, Algorithm::FoMaml, Algorithm::MetaSgd, Algorithm::Anil, Algorithm::Reptile,
                      Algorithm::ProtoNet, Algorithm::IMaml})
    if (name == algorithm_name(a)) return a;
  MG_FAIL("unknown algorithm '", name, "' (known: maml, fomaml, metasgd, anil, reptile, protonet, imaml)");
}

const char* algorithm_name(Algorithm algorithm) {
  switch (algorithm) {
    case Algorithm::Maml:
      return "maml";
    case Algorithm::FoMaml:
      return "fomaml";
    case Algorithm::MetaSgd:
      return "metasgd";
    case Algorithm::Anil:
      return "anil";
    case Algorithm::Reptile:
      return "reptile";
    case Algorithm::ProtoNet:
      return "protonet";
    case Algorithm::IMaml:
      return "imaml";
  }
  return "?";
}

const char* loss_kind_name(LossKind kind) { return kind == LossKind::Mse ? "mse" : "cross_entropy"; }

Trainer::Trainer(nn::Module& model, TaskSampler& train_sampler, const TaskSampler* eval_sampler, TrainerConfig config,
                 std::ostream* log)
    : model_(model),
      train_sampler_(train_sampler),
      eval_sampler_(eval_sampler),
      config_(std::move(config)),
      log_(log),
      best_eval_loss_(std::numeric_limits<double>::infinity()) {
  MG_CHECK(config_.algorithm != Algorithm::ProtoNet || config_.loss == LossKind::CrossEntropy,
           "Trainer: protonet classifies; it needs a classification task (cross-entropy loss)");
  const bool maml_family = config_.algorithm == Algorithm::Maml || config_.algorithm == Algorithm::FoMaml ||
                           config_.algorithm == Algorithm::MetaSgd || config_.algorithm == Algorithm::Anil;
  MG_CHECK(config_.batching != Batching::TaskBatched || maml_family,
           "Trainer: task-batched meta-batches are for the MAML family (maml, fomaml, metasgd, anil), not '",
           algorithm_name(config_.algorithm), "'");
  device_ = model_.device();
  // Auto batches where it was measured to pay (bench/RESULTS.md): small models without
  // convolutions (W-sin's MLP: 4.9x the loop) and CUDA models. On the CPU a model of
  // kThreadedTaskMinParameters or more loops: on several threads its tasks run on them (W-tf on 2
  // threads: 11.3 vs 7.4 meta-iterations/s), and on one, batching gained nothing (W-tf: 117 vs
  // 117 ms) while holding every task's graph at once (130 vs 30 MiB).
  const bool large_cpu_model = device_.is_cpu() && tasks_on_threads_pay(model_);
  task_batched_ = config_.batching == Batching::TaskBatched ||
                  (config_.batching == Batching::Auto && maml_family && !config_.checkpoint_inner &&
                   !has_convolution(model_) && !large_cpu_model && task_threads(config_.meta_batch) <= 1);
  MG_CHECK(config_.meta_batch >= 1, "Trainer: meta_batch must be >= 1, got ", config_.meta_batch);
  MG_CHECK(config_.inner_steps >= 0, "Trainer: inner_steps must be >= 0, got ", config_.inner_steps);
  MG_CHECK(config_.iterations >= 0, "Trainer: iterations must be >= 0, got ", config_.iterations);
  MG_CHECK(config_.log_interval >= 0 && config_.eval_interval >= 0,
           "Trainer: log_interval and eval_interval must be >= 0");
  inner_.steps = config_.inner_steps;
  inner_.lr = config_.inner_lr;
  inner_.second_order = config_.algorithm != Algorithm::FoMaml;
  inner_.optimizer = config_.inner_optimizer;
  inner_.checkpoint = config_.checkpoint_inner;
  if (config_.algorithm == Algorithm::Anil) {
    inner_.adapt_prefixes = {config_.anil_head_prefix};
    bool any = false;
    for (const auto& [name, p] : model_.named_parameters()) any = any || adapts(inner_, name);
    MG_CHECK(any, "Trainer: ANIL head prefix '", config_.anil_head_prefix, "' matches no parameter of the model");
  }
  if (config_.algorithm == Algorithm::MetaSgd) inner_.learned_lr = LearnedLr::PerElement;
  if (config_.per_step_lrs) {
    MG_CHECK(config_.algorithm != Algorithm::MetaSgd,
             "Trainer: per-step learning rates (MAML++) and Meta-SGD's "
             "per-element rates are two kinds of learned rate; choose one");
    MG_CHECK(config_.algorithm == Algorithm::Maml || config_.algorithm == Algorithm::FoMaml ||
                 config_.algorithm == Algorithm::Anil,
             "Trainer: per-step learning rates are for maml, fomaml and anil, not '", algorithm_name(config_.algorithm),
             "'");
    inner_.learned_lr = LearnedLr::PerTensorPerStep;
  }
  MG_CHECK(config_.multi_step_anneal >= 0, "Trainer: multi_step_anneal must be >= 0");

  nn::TensorDict outer;
  for (const auto& [name, p] : model_.named_parameters()) outer.insert(kModelPrefix + name, p);
  if (inner_.learned_lr != LearnedLr::None) {
    learned_lrs_ = make_learned_lrs(model_.named_parameters(), inner_);
    for (const auto& [name, lr] : learned_lrs_) outer.insert(kLrsPrefix + name, lr);
  }
  optimizer_ = std::make_unique<nn::Adam>(outer, nn::AdamOptions{.lr = config_.outer_lr});

  if (config_.device_graph) {
    MG_CHECK(device_.is_cuda(), "Trainer: device graphs need a model on a CUDA device; this one is on ", device_);
    MG_CHECK(task_batched_, "Trainer: device graphs record the task-batched step of the MAML family (maml, fomaml, ",
             "metasgd, anil); '", algorithm_name(config_.algorithm), "' with ",
             config_.checkpoint_inner ? "a checkpointed inner loop" : "looped tasks", " cannot be recorded");
    MG_CHECK(config_.multi_step_anneal == 0,
             "Trainer: device graphs replay fixed loss weights; MAML++'s annealed multi-step loss changes them every "
             "iteration");
  }
}

std::string Trainer::fingerprint(const nn::Module& model) {
  std::string out;
  for (const auto& [name, p] : model.named_parameters()) out += name + shape_str(p.shape()) + ";";
  return out;
}

Tensor Trainer::task_loss(const Tensor& output, const Tensor& target) const {
  return config_.loss == LossKind::Mse ? nn::mse_loss(output, target) : nn::cross_entropy(output, target);
}

TaskBatch Trainer::on_device(const TaskBatch& batch) const { return device_.is_cpu() ? batch : batch.to(device_); }

double Trainer::step() {
  const TaskBatch batch = on_device(train_sampler_.next_batch(config_.meta_batch));
  if (config_.device_graph) return graph_step(batch);
  const nn::TensorDict params = model_.named_parameters();
  const double scale = 1.0 / static_cast<double>(config_.meta_batch);
  optimizer_->zero_grad();
  double total = 0.0;
  switch (config_.algorithm) {
    case Algorithm::Reptile:
      total = reptile_step(batch, params, scale);
      break;
    case Algorithm::ProtoNet:
      total = protonet_step(batch, params, scale);
      break;
    case Algorithm::IMaml:
      total = imaml_step(batch, params, scale);
      break;
    default:
      total = maml_family_step(batch, params, scale);
      break;
  }
  optimizer_->step();
  ++iteration_;
  return total * scale;
}

MamlOptions Trainer::maml_options() const {
  MamlOptions options;
  options.inner = inner_;
  if (config_.multi_step_anneal > 0 && inner_.steps > 1)
    options.multi_step_weights = multi_step_loss_weights(inner_.steps, iteration_, config_.multi_step_anneal);
  return options;
}

BatchedLossFn Trainer::batched_loss_fn() const {
  return config_.loss == LossKind::Mse ? BatchedLossFn(batched_mse) : BatchedLossFn(batched_cross_entropy);
}

double Trainer::maml_family_step(const TaskBatch& batch, const nn::TensorDict& params, double scale) {
  const LossFn loss = loss_fn();
  const MamlOptions options = maml_options();
  const nn::TensorDict* lrs = learned_lrs_.empty() ? nullptr : &learned_lrs_;
  double total = 0.0;
  if (task_batched_) {
    BatchedTaskLoss result = maml_batched_loss(model_, params, batch, batched_loss_fn(), options, lrs);
    // query_loss is already the mean over the meta-batch.
    result.query_loss.backward();
    return sum(result.task_query_losses).item();
  }
  const std::vector<double> losses = accumulate_task_gradients(
      outer_leaves(params), batch.size(), task_threads(batch.size()), scale,
      [&](int64_t t) { return maml_task_loss(model_, params, batch.task(t), loss, options, lrs).query_loss; });
  for (double l : losses) total += l;
  return total;
}

double Trainer::graph_step(const TaskBatch& batch) {
  const double scale = 1.0 / static_cast<double>(config_.meta_batch);
  const nn::TensorDict params = model_.named_parameters();
  if (!graph_warmed_) {
    // Eager first: the allocator's cache and the libraries' handles fill outside the capture.
    graph_warmed_ = true;
    optimizer_->zero_grad();
    const double total = maml_family_step(batch, params, scale);
    optimizer_->step();
    ++iteration_;
    return total * scale;
  }
  if (graph_ == nullptr) {
    graph_batch_ =
        TaskBatch{batch.support_x.clone(), batch.support_y.clone(), batch.query_x.clone(), batch.query_y.clone(), {}};
    // The recorded backward makes the gradients; later replays write the same tensors.
    optimizer_->zero_grad();
    const MamlOptions options = maml_options();
    const nn::TensorDict* lrs = learned_lrs_.empty() ? nullptr : &learned_lrs_;
    try {
      graph_ = capture_graph(device_, [&] {
        BatchedTaskLoss result = maml_batched_loss(model_, params, graph_batch_, batched_loss_fn(), options, lrs);
        result.query_loss.backward();
        graph_loss_ = sum(result.task_query_losses);
      });
    } catch (const Error& e) {
      MG_FAIL("Trainer: the meta-step cannot be recorded as a device graph (train without it): ", e.what());
    }
  } else {
    const std::vector<std::pair<const Tensor*, const Tensor*>> inputs{{&batch.support_x, &graph_batch_.support_x},
                                                                      {&batch.support_y, &graph_batch_.support_y},
                                                                      {&batch.query_x, &graph_batch_.query_x},
                                                                      {&batch.query_y, &graph_batch_.query_y}};
    for (const auto& [from, to] : inputs) {
      MG_CHECK(from->shape() == to->shape() && from->dtype() == to->dtype(),
               "Trainer: a device graph replays one shape of meta-batch; this one has ", describe(*from),
               " where the recorded one had ", describe(*to));
      NoGradGuard no_grad;
      to->detach().copy_(*from);
    }
  }
  graph_->replay();
  optimizer_->step();
  ++iteration_;
  return graph_loss_.item() * scale;
}

int Trainer::task_threads(int64_t tasks) const {
  // One stream per device orders a GPU's work: threads would only take turns issuing it.
  if (!device_.is_cpu()) return 1;
  switch (config_.task_threads) {
    case TaskThreads::Off:
      return 1;
    case TaskThreads::Auto:
      return tasks_on_threads_pay(model_) ? meta::task_threads(model_, tasks) : 1;
    case TaskThreads::On:
      return meta::task_threads(model_, tasks);
  }
  return 1;
}

TensorList Trainer::outer_leaves(const nn::TensorDict& params) const {
  TensorList leaves;
  for (const auto& [name, p] : params) leaves.push_back(p);
  for (const auto& [name, lr] : learned_lrs_) leaves.push_back(lr);
  return leaves;
}

double Trainer::reptile_step(const TaskBatch& batch, const nn::TensorDict& params, double scale) {
  const LossFn loss = loss_fn();
  std::vector<double> losses(static_cast<std::size_t>(batch.size()));
  std::vector<nn::TensorDict> directions(losses.size());
  for_each_task(batch.size(), task_threads(batch.size()), [&](int64_t t) {
    const Task task = batch.task(t);
    {
      // Reptile has no query objective of its own; the un-adapted query loss tracks progress.
      NoGradGuard no_grad;
      losses[t] = task_loss(model_.forward(nn::Params(params), task.query_x), task.query_y).item();
    }
    directions[t] = reptile_direction(model_, params, task, loss, inner_);
  });
  double total = 0.0;
  nn::TensorDict sum;
  for (std::size_t t = 0; t < losses.size(); ++t) {
    total += losses[t];
    add_into(sum, directions[t]);
  }
  set_grads(params, sum, scale);
  return total;
}

double Trainer::protonet_step(const TaskBatch& batch, const nn::TensorDict& params, double scale) {
  const std::vector<double> losses =
      accumulate_task_gradients(outer_leaves(params), batch.size(), task_threads(batch.size()), scale, [&](int64_t t) {
        const Task task = batch.task(t);
        return protonet_loss(model_, nn::Params(params), task, task_ways(task)).loss;
      });
  double total = 0.0;
  for (double l : losses) total += l;
  return total;
}

double Trainer::imaml_step(const TaskBatch& batch, const nn::TensorDict& params, double scale) {
  const LossFn loss = loss_fn();
  std::vector<ImamlResult> results(static_cast<std::size_t>(batch.size()));
  for_each_task(batch.size(), task_threads(batch.size()), [&](int64_t t) {
    results[t] = imaml_meta_gradient(model_, params, batch.task(t), loss, imaml_options());
  });
  double total = 0.0;
  nn::TensorDict sum;
  for (const ImamlResult& result : results) {
    total += result.query_loss;
    add_into(sum, result.meta_gradient);
  }
  set_grads(params, sum, scale);
  return total;
}

EvalResult Trainer::evaluate(int64_t tasks, int inner_steps) {
  MG_CHECK(eval_sampler_ != nullptr, "Trainer.evaluate: no evaluation sampler was given");
  return evaluate_on(*eval_sampler_, tasks < 0 ? config_.eval_tasks : tasks, inner_steps);
}

EvalResult Trainer::evaluate_on(const TaskSampler& sampler, int64_t tasks, int inner_steps) {
  MG_CHECK(tasks >= 1, "Trainer.evaluate: needs at least one task, got ", tasks);
  const LossFn loss = loss_fn();
  // Values are those of the trained objective; only the graph for meta-gradients is skipped.
  InnerLoopOptions options = inner_;
  options.second_order = false;
  options.checkpoint = false;  // no backward through evaluation
  if (inner_steps >= 0) options.steps = inner_steps;
  if (options.learned_lr == LearnedLr::PerTensorPerStep) {
    MG_CHECK(options.steps <= inner_.steps, "Trainer.evaluate: per-step learned rates exist for ", inner_.steps,
             " steps, not ", options.steps);
  }
  ImamlOptions imaml = imaml_options();
  if (inner_steps >= 0) imaml.inner_steps = inner_steps;
  const nn::TensorDict lrs = learned_lrs_.map([](const Tensor& t) { return t.detach(); });
  // Evaluation adapts in training mode, which updates BatchNorm running statistics; they are put
  // back afterwards so that evaluating leaves the model as it was.
  const nn::TensorDict buffers = model_.named_buffers().map([](const Tensor& b) { return b.detach().clone(); });
  const bool classifies = config_.loss == LossKind::CrossEntropy;
  std::vector<double> losses(static_cast<std::size_t>(tasks)), accuracies(classifies ? losses.size() : 0);
  for_each_task(tasks, task_threads(tasks), [&](int64_t i) {
    const Task task =
        device_.is_cpu() ? sampler.task(static_cast<uint64_t>(i)) : sampler.task(static_cast<uint64_t>(i)).to(device_);
    const nn::TensorDict start =
        model_.named_parameters().map([](const Tensor& p) { return p.detach().requires_grad_(); });
    Tensor out;
    double task_loss_value = 0.0;
    if (config_.algorithm == Algorithm::ProtoNet) {
      NoGradGuard no_grad;
      const ProtoOutput proto = protonet_loss(model_, nn::Params(start), task, task_ways(task));
      out = proto.logits;
      task_loss_value = proto.loss.item();
    } else {
      nn::TensorDict adapted;
      if (config_.algorithm == Algorithm::IMaml) {
        adapted = imaml_adapt(model_, start, task, loss, imaml);
      } else {
        adapted =
            adapt(model_, start, task.support_x, task.support_y, loss, options, lrs.empty() ? nullptr : &lrs).params;
      }
      NoGradGuard no_grad;
      out = model_.forward(nn::Params(adapted), task.query_x);
      task_loss_value = task_loss(out, task.query_y).item();
    }
    losses[i] = task_loss_value;
    if (classifies) accuracies[i] = nn::accuracy(out, task.query_y);
  });
  {
    NoGradGuard no_grad;
    for (const auto& [name, b] : model_.named_buffers()) b.detach().copy_(buffers.at(name));
  }
  EvalResult result;
  result.tasks = tasks;
  const MeanCi l = mean_ci95(losses);
  result.loss = l.mean;
  result.loss_ci95 = l.ci95;
  if (!accuracies.empty()) {
    const MeanCi a = mean_ci95(accuracies);
    result.accuracy = a.mean;
    result.accuracy_ci95 = a.ci95;
  }
  return result;
}

LossFn Trainer::loss_fn() const {
  return [this](const Tensor& out, const Tensor& y) { return task_loss(out, y); };
}

ImamlOptions Trainer::imaml_options() const {
  ImamlOptions o = config_.imaml;
  o.inner_steps = config_.inner_steps;
  o.inner_lr = config_.inner_lr;
  return o;
}

void Trainer::write_csv_row(double train_loss, const EvalResult* eval, double seconds) {
  const std::filesystem::path path = std::filesystem::path(config_.output_dir) / "metrics.csv";
  // A resumed run appends to the metrics of the run it continues.
  const bool append = csv_header_written_ || (iteration_ > 1 && std::filesystem::exists(path));
  std::ofstream out(path, append ? std::ios::app : std::ios::trunc);
  MG_CHECK(out.good(), "Trainer: cannot write ", path.string());
  if (!append) out << "iteration,meta_train_loss,eval_loss,eval_ci95,eval_accuracy,seconds\n";
  csv_header_written_ = true;
  out.precision(9);
  out << iteration_ << ',' << train_loss << ',';
  if (eval) {
    out << eval->loss << ',' << eval->loss_ci95 << ',';
    if (eval->accuracy >= 0) out << eval->accuracy;
  } else {
    out << ",,";
  }
  out << ',' << seconds << '\n';
  MG_CHECK(out.good(), "Trainer: failed writing ", path.string());
}

bool Trainer::train() {
  using clock = std::chrono::steady_clock;
  const bool has_output = !config_.output_dir.empty();
  if (has_output) std::filesystem::create_directories(config_.output_dir);
  const std::filesystem::path dir(config_.output_dir);
  const auto start = clock::now();
  const double seconds_before = train_seconds_;
  const int64_t first = iteration_;
  auto stop_requested = [this] { return config_.stop_flag != nullptr && config_.stop_flag->load(); };
  while (iteration_ < config_.iterations) {
    if (stop_requested()) {
      // The state after a whole iteration is what a checkpoint holds; resuming repeats nothing.
      if (has_output) save((dir / "last.safetensors").string());
      if (log_) *log_ << "stopped at iteration " << iteration_ << "/" << config_.iterations << "\n";
      return false;
    }
    const double train_loss = step();
    const double seconds = std::chrono::duration<double>(clock::now() - start).count();
    train_seconds_ = seconds_before + seconds;
    const bool eval_now =
        (config_.eval_interval > 0 && iteration_ % config_.eval_interval == 0) || iteration_ == config_.iterations;
    EvalResult eval;
    const bool evaluated = eval_now && eval_sampler_ != nullptr;
    if (evaluated) eval = evaluate();
    const bool improved = evaluated && eval.loss < best_eval_loss_;
    if (improved) {
      best_eval_loss_ = eval.loss;
      best_eval_ = eval;
    }
    if (has_output) {
      write_csv_row(train_loss, evaluated ? &eval : nullptr, train_seconds_);
      if (improved) save((dir / "best.safetensors").string());
      if (eval_now) save((dir / "last.safetensors").string());
    }
    if (log_ && config_.log_interval > 0 &&
        (iteration_ % config_.log_interval == 0 || iteration_ == config_.iterations)) {
      const double rate = static_cast<double>(iteration_ - first) / std::max(seconds, 1e-9);
      const double eta = static_cast<double>(config_.iterations - iteration_) / rate;
      std::ostringstream line;
      line.precision(4);
      line << "iter " << iteration_ << "/" << config_.iterations << "  loss " << train_loss;
      if (evaluated) {
        line << "  eval " << eval.loss << " +- " << eval.loss_ci95;
        if (eval.accuracy >= 0) line << "  acc " << 100.0 * eval.accuracy << "% +- " << 100.0 * eval.accuracy_ci95;
      }
      line.precision(3);
      line << "  " << rate << " it/s  elapsed " << format_seconds(train_seconds_) << "  ETA " << format_seconds(eta);
      *log_ << line.str() << std::endl;
    }
  }
  return true;
}

void Trainer::drop_csv_rows_after(int64_t iteration) const {
  // An interrupted run may have logged iterations past its last checkpoint; the resumed run
  // logs them again, so they go.
  const std::filesystem::path path = std::filesystem::path(config_.output_dir) / "metrics.csv";
  if (config_.output_dir.empty() || !std::filesystem::exists(path)) return;
  std::ifstream in(path);
  std::string header, line, kept;
  if (!std::getline(in, header)) return;
  kept = header + "\n";
  while (std::getline(in, line)) {
    std::size_t used = 0;
    int64_t row = 0;
    try {
      row = std::stoll(line, &used);
    } catch (const std::exception&) {
      continue;
    }
    if (row <= iteration) kept += line + "\n";
  }
  in.close();
  std::ofstream out(path, std::ios::trunc);
  out << kept;
  MG_CHECK(out.good(), "Trainer: failed rewriting ", path.string());
}

void Trainer::save(const std::string& path) const {
  nn::TensorDict tensors;
  for (const auto& [name, t] : model_.state_dict()) tensors.insert(kModelPrefix + name, t.detach());
  for (const auto& [name, t] : learned_lrs_) tensors.insert(kLrsPrefix + name, t.detach());
  nn::OptimizerState opt = optimizer_->state_dict(kOptimizerPrefix);
  for (const auto& [name, t] : opt.tensors) tensors.insert(name, t);
  std::map<std::string, std::string> metadata = std::move(opt.metadata);
  nn::MetadataWriter w(metadata, kTrainerPrefix);
  w.put_int("step", iteration_);
  w.put_text("cursor", std::to_string(train_sampler_.cursor()));
  w.put_text("sampler_seed", std::to_string(train_sampler_.seed()));
  w.put_text("algorithm", algorithm_name(config_.algorithm));
  w.put_text("config", config_summary(config_));
  w.put_text("fingerprint", fingerprint(model_));
  w.put_double("best_eval_loss", best_eval_loss_);
  w.put_double("train_seconds", train_seconds_);
  w.put_double("best_eval_accuracy", best_eval_.accuracy);
  w.put_double("best_eval_accuracy_ci95", best_eval_.accuracy_ci95);
  w.put_double("best_eval_loss_ci95", best_eval_.loss_ci95);
  for (const auto& [key, value] : config_.metadata) {
    MG_CHECK(!metadata.contains(key), "Trainer.save: metadata key '", key, "' is the trainer's own");
    metadata[key] = value;
  }
  nn::save_safetensors(path, tensors, metadata);
}

namespace {

// The first parameter where two fingerprints ("name[shape];...") part, and how many differ.
std::string fingerprint_difference(const std::string& checkpoint, const std::string& model) {
  auto entries = [](const std::string& text) {
    std::map<std::string, std::string> out;  // name -> shape
    std::vector<std::string> order;
    std::size_t start = 0;
    while (start < text.size()) {
      const std::size_t end = text.find(';', start);
      const std::string entry = text.substr(start, end - start);
      const std::size_t bracket = entry.find('[');
      order.push_back(entry.substr(0, bracket));
      out[order.back()] = bracket == std::string::npos ? "" : entry.substr(bracket);
      if (end == std::string::npos) break;
      start = end + 1;
    }
    return std::make_pair(out, order);
  };
  const auto [in_file, file_order] = entries(checkpoint);
  const auto [in_model, model_order] = entries(model);
  std::vector<std::string> differences;
  for (const std::string& name : model_order) {
    const auto it = in_file.find(name);
    if (it == in_file.end())
      differences.push_back(name + " " + in_model.at(name) + " is not in the checkpoint");
    else if (it->second != in_model.at(name))
      differences.push_back(name + " is " + it->second + " in the checkpoint but " + in_model.at(name) + " here");
  }
  for (const std::string& name : file_order)
    if (!in_model.contains(name))
      differences.push_back("the checkpoint's " + name + " " + in_file.at(name) + " is not in this model");
  if (differences.empty()) return "parameters in another order";
  std::string out = differences.front();
  if (differences.size() > 1) out += " (and " + std::to_string(differences.size() - 1) + " more differences)";
  return out + "; the checkpoint was written for another model";
}

// Checks a checkpoint against this model before anything changes, so a wrong file leaves the
// trainer as it was.
void check_checkpoint_model(const nn::MetadataReader& in, const nn::Module& model, const nn::TensorDict& lrs,
                            const nn::SafetensorsFile& file, const char* lrs_prefix) {
  const std::string expected = Trainer::fingerprint(model);
  const std::string& found = in.text("fingerprint");
  MG_CHECK(found == expected, in.context(), ": model mismatch: ", fingerprint_difference(found, expected));
  for (const auto& [name, lr] : lrs) {
    const std::string key = lrs_prefix + name;
    MG_CHECK(file.tensors.contains(key), in.context(), ": no learned rate ", name);
    const Tensor& saved = file.tensors.at(key);
    MG_CHECK(saved.shape() == lr.shape(), in.context(), ": learned rate ", name, " has shape ",
             shape_str(saved.shape()), ", expected ", shape_str(lr.shape()));
  }
}

}  // namespace

int64_t Trainer::load_weights(const std::string& path) {
  const nn::SafetensorsFile file = nn::load_safetensors(path);
  const nn::MetadataReader in(file.metadata, kTrainerPrefix, "Trainer.load_weights(" + path + ")");
  check_checkpoint_model(in, model_, learned_lrs_, file, kLrsPrefix);
  nn::TensorDict model_state;
  for (const auto& [name, t] : file.tensors)
    if (name.rfind(kModelPrefix, 0) == 0) model_state.insert(name.substr(std::string(kModelPrefix).size()), t);
  model_.load_state_dict(model_state);
  NoGradGuard no_grad;
  for (const auto& [name, lr] : learned_lrs_) lr.detach().copy_(file.tensors.at(kLrsPrefix + name));
  return in.get_int("step");
}

void Trainer::resume(const std::string& path) {
  const nn::SafetensorsFile file = nn::load_safetensors(path);
  const nn::MetadataReader in(file.metadata, kTrainerPrefix, "Trainer.resume(" + path + ")");
  check_checkpoint_model(in, model_, learned_lrs_, file, kLrsPrefix);
  const std::string& algorithm = in.text("algorithm");
  MG_CHECK(algorithm == algorithm_name(config_.algorithm), in.context(), ": the checkpoint was written by '", algorithm,
           "' but this trainer runs '", algorithm_name(config_.algorithm), "'");
  const int64_t step = in.get_int("step");
  const uint64_t cursor = parse_u64(in, "cursor");
  const double best = in.get_double("best_eval_loss");
  nn::TensorDict model_state;
  for (const auto& [name, t] : file.tensors)
    if (name.rfind(kModelPrefix, 0) == 0) model_state.insert(name.substr(std::string(kModelPrefix).size()), t);
  model_.load_state_dict(model_state);
  optimizer_->load_state_dict(file.tensors, file.metadata, kOptimizerPrefix);
  {
    NoGradGuard no_grad;
    for (const auto& [name, lr] : learned_lrs_) lr.detach().copy_(file.tensors.at(kLrsPrefix + name));
  }
  iteration_ = step;
  train_sampler_.set_cursor(cursor);
  best_eval_loss_ = best;
  best_eval_ = EvalResult{};
  best_eval_.loss = best;
  if (file.metadata.contains(std::string(kTrainerPrefix) + "best_eval_accuracy")) {
    best_eval_.accuracy = in.get_double("best_eval_accuracy");
    best_eval_.accuracy_ci95 = in.get_double("best_eval_accuracy_ci95");
    best_eval_.loss_ci95 = in.get_double("best_eval_loss_ci95");
  }
  train_seconds_ =
      file.metadata.contains(std::string(kTrainerPrefix) + "train_seconds") ? in.get_double("train_seconds") : 0.0;
  csv_header_written_ = false;
  drop_csv_rows_after(step);
}

}  // namespace mg::meta
