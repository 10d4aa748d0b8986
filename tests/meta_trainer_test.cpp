// The meta-trainer: it learns, it resumes bit for bit, it writes its metrics and checkpoints, and
// it refuses a checkpoint written for another model.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../meta/models.h"
#include "../meta/sinusoid.h"
#include "../meta/trainer.h"
#include "../nn/mlp.h"
#include "../tensor/error.h"
#include "../tensor/threads.h"

using namespace mg;

namespace {

std::shared_ptr<nn::Sequential> tiny_mlp(uint64_t seed, int64_t hidden = 8) {
  Generator gen(seed);
  return nn::make_mlp({.sizes = {1, hidden, hidden, 1}, .activation = nn::functional::Activation::ReLU}, &gen);
}

meta::SinusoidOptions small_tasks() { return {.shots = 5, .queries = 5}; }

meta::TrainerConfig base_config(meta::Algorithm algorithm, int64_t iterations) {
  meta::TrainerConfig c;
  c.algorithm = algorithm;
  c.inner_steps = 1;
  c.inner_lr = algorithm == meta::Algorithm::Reptile ? 0.02 : 0.01;
  c.outer_lr = 1e-2;
  c.meta_batch = 4;
  c.iterations = iterations;
  c.log_interval = 0;
  c.eval_interval = 0;
  c.eval_tasks = 8;
  return c;
}

std::filesystem::path scratch_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("mg_trainer_test_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::vector<std::vector<float>> values(const nn::Module& model) {
  std::vector<std::vector<float>> out;
  for (const auto& [name, p] : model.named_parameters()) out.push_back(p.to_vector<float>());
  return out;
}

// Two-way classification of points by the sign of a random direction: enough to drive the
// cross-entropy path (accuracy and its interval).
class SignSampler : public meta::TaskSampler {
 public:
  explicit SignSampler(uint64_t seed) : meta::TaskSampler(seed) {}
  meta::Task sample(Generator& gen) const override {
    const Tensor w = randn({2, 1}, kFloat32, kCPU, &gen);
    auto draw = [&](Tensor& x, Tensor& y) {
      x = randn({6, 2}, kFloat32, kCPU, &gen);
      std::vector<int64_t> labels;
      std::vector<double> xs = x.to_vector();
      const std::vector<double> ws = w.to_vector();
      // Alternating labels (every task has both classes): a point on the wrong side is mirrored.
      for (int64_t i = 0; i < 6; ++i) {
        const bool positive = xs[2 * i] * ws[0] + xs[2 * i + 1] * ws[1] > 0;
        if (positive != (i % 2 == 1)) xs[2 * i] = -xs[2 * i], xs[2 * i + 1] = -xs[2 * i + 1];
        labels.push_back(i % 2);
      }
      x = tensor(xs, {6, 2});
      y = tensor(labels, {6});
    };
    meta::Task task;
    draw(task.support_x, task.support_y);
    draw(task.query_x, task.query_y);
    return task;
  }
};

// Two classes of 8x8 images: bright top half or bright bottom half, for a conv model.
class ImageSignSampler : public meta::TaskSampler {
 public:
  explicit ImageSignSampler(uint64_t seed) : meta::TaskSampler(seed) {}
  meta::Task sample(Generator& gen) const override {
    auto draw = [&](Tensor& x, Tensor& y) {
      x = rand({4, 1, 8, 8}, kFloat32, kCPU, &gen);
      std::vector<float> v = x.to_vector<float>();
      for (int64_t i = 0; i < 4; ++i)
        for (int64_t p = 0; p < 32; ++p) v[static_cast<std::size_t>(i * 64 + (i % 2) * 32 + p)] += 1.0f;
      x = tensor(v, {4, 1, 8, 8});
      y = tensor(std::vector<int64_t>{0, 1, 0, 1}, {4});
    };
    meta::Task task;
    draw(task.support_x, task.support_y);
    draw(task.query_x, task.query_y);
    return task;
  }
};

}  // namespace

TEST_SUITE("meta.trainer") {
  TEST_CASE("MAML on sinusoids lowers the held-out post-adaptation loss") {
    auto model = tiny_mlp(1);
    meta::SinusoidSampler train(small_tasks(), 100), held_out(small_tasks(), 200);
    meta::TrainerConfig config = base_config(meta::Algorithm::Maml, 50);
    config.eval_tasks = 16;
    meta::Trainer trainer(*model, train, &held_out, config);
    const double before = trainer.evaluate().loss;
    trainer.train();
    const double after = trainer.evaluate().loss;
    MESSAGE("eval loss before ", before, " after ", after);
    CHECK(trainer.iteration() == 50);
    CHECK(after < before);
  }

  TEST_CASE("training N iterations equals N/2, checkpoint, fresh trainer, resume, N/2, bit for bit") {
    for (meta::Algorithm algorithm : {meta::Algorithm::Maml, meta::Algorithm::FoMaml, meta::Algorithm::Reptile,
                                      meta::Algorithm::MetaSgd, meta::Algorithm::Anil, meta::Algorithm::IMaml}) {
      CAPTURE(meta::algorithm_name(algorithm));
      meta::TrainerConfig config = base_config(algorithm, 20);
      config.anil_head_prefix = "4.";  // the last Linear of the Sequential
      auto straight = tiny_mlp(3);
      {
        meta::SinusoidSampler train(small_tasks(), 7);
        meta::Trainer trainer(*straight, train, nullptr, config);
        trainer.train();
      }
      const auto dir = scratch_dir(std::string("resume_") + meta::algorithm_name(algorithm));
      const std::string ckpt = (dir / "half.safetensors").string();
      {
        auto model = tiny_mlp(3);
        meta::SinusoidSampler train(small_tasks(), 7);
        meta::TrainerConfig first_half = config;
        first_half.iterations = 10;
        meta::Trainer trainer(*model, train, nullptr, first_half);
        trainer.train();
        trainer.save(ckpt);
      }
      auto resumed = tiny_mlp(99);  // a different initialisation: everything must come from the file
      meta::SinusoidSampler train(small_tasks(), 7);
      meta::Trainer trainer(*resumed, train, nullptr, config);
      trainer.resume(ckpt);
      CHECK(trainer.iteration() == 10);
      CHECK(train.cursor() == 40);
      trainer.train();
      CHECK(values(*resumed) == values(*straight));
      std::filesystem::remove_all(dir);
    }
  }

  TEST_CASE("MAML++ options: per-step learned rates and the annealed multi-step loss train and resume exactly") {
    meta::TrainerConfig config = base_config(meta::Algorithm::Maml, 12);
    config.inner_steps = 3;
    config.per_step_lrs = true;
    config.multi_step_anneal = 8;
    auto straight = tiny_mlp(4);
    std::vector<float> initial_rates;
    {
      meta::SinusoidSampler train(small_tasks(), 5);
      meta::Trainer trainer(*straight, train, nullptr, config);
      CHECK(trainer.learned_lrs().size() == 6);
      CHECK(trainer.learned_lrs().values()[0].shape() == Shape{3});
      initial_rates = trainer.learned_lrs().values()[0].to_vector<float>();
      trainer.train();
      CHECK(trainer.learned_lrs().values()[0].to_vector<float>() != initial_rates);  // the rates learn
    }
    const auto dir = scratch_dir("maml_plus_plus");
    {
      auto model = tiny_mlp(4);
      meta::SinusoidSampler train(small_tasks(), 5);
      meta::TrainerConfig half = config;
      half.iterations = 6;
      meta::Trainer trainer(*model, train, nullptr, half);
      trainer.train();
      trainer.save((dir / "half.safetensors").string());
    }
    auto resumed = tiny_mlp(40);
    meta::SinusoidSampler train(small_tasks(), 5);
    meta::Trainer trainer(*resumed, train, nullptr, config);
    trainer.resume((dir / "half.safetensors").string());
    trainer.train();
    CHECK(values(*resumed) == values(*straight));
    meta::TrainerConfig both = config;
    both.algorithm = meta::Algorithm::MetaSgd;
    CHECK_THROWS_WITH_AS(meta::Trainer(*resumed, train, nullptr, both), doctest::Contains("choose one"), Error);
  }

  TEST_CASE("metrics CSV and checkpoints are written") {
    const auto dir = scratch_dir("outputs");
    auto model = tiny_mlp(5);
    meta::SinusoidSampler train(small_tasks(), 1), held_out(small_tasks(), 2);
    meta::TrainerConfig config = base_config(meta::Algorithm::FoMaml, 6);
    config.eval_interval = 3;
    config.log_interval = 2;
    config.output_dir = dir.string();
    std::ostringstream log;
    meta::Trainer trainer(*model, train, &held_out, config, &log);
    trainer.train();
    std::ifstream csv(dir / "metrics.csv");
    std::string line;
    std::vector<std::string> lines;
    while (std::getline(csv, line)) lines.push_back(line);
    REQUIRE(lines.size() == 7);
    CHECK(lines[0] == "iteration,meta_train_loss,eval_loss,eval_ci95,eval_accuracy,seconds");
    CHECK(lines[1].rfind("1,", 0) == 0);
    CHECK(lines[6].rfind("6,", 0) == 0);
    CHECK(std::filesystem::exists(dir / "last.safetensors"));
    CHECK(std::filesystem::exists(dir / "best.safetensors"));
    CHECK(log.str().find("it/s") != std::string::npos);
    CHECK(log.str().find("ETA") != std::string::npos);
    std::filesystem::remove_all(dir);
  }

  TEST_CASE("a checkpoint from a model of another shape is refused with one clear error") {
    const auto dir = scratch_dir("mismatch");
    const std::string ckpt = (dir / "c.safetensors").string();
    meta::SinusoidSampler train(small_tasks(), 1);
    {
      auto model = tiny_mlp(1, 8);
      meta::Trainer trainer(*model, train, nullptr, base_config(meta::Algorithm::Maml, 1));
      trainer.train();
      trainer.save(ckpt);
    }
    auto other = tiny_mlp(1, 6);
    meta::Trainer trainer(*other, train, nullptr, base_config(meta::Algorithm::Maml, 1));
    const auto before = values(*other);
    std::string message;
    try {
      trainer.resume(ckpt);
    } catch (const Error& e) {
      message = e.what();
    }
    CHECK(message.find("mismatch") != std::string::npos);
    CHECK(message.find("[8,1]") != std::string::npos);
    CHECK(values(*other) == before);
    CHECK(trainer.iteration() == 0);
    std::filesystem::remove_all(dir);
  }

  TEST_CASE("evaluation gives a finite mean and 95% interval") {
    auto model = tiny_mlp(2);
    meta::SinusoidSampler train(small_tasks(), 1), held_out(small_tasks(), 2);
    meta::Trainer trainer(*model, train, &held_out, base_config(meta::Algorithm::Maml, 0));
    const meta::EvalResult r = trainer.evaluate(10);
    CHECK(r.tasks == 10);
    CHECK(std::isfinite(r.loss));
    CHECK(std::isfinite(r.loss_ci95));
    CHECK(r.loss > 0);
    CHECK(r.loss_ci95 > 0);
    CHECK(r.accuracy == -1.0);
    CHECK(held_out.cursor() == 0);  // evaluation reads the stream by index and moves nothing
  }

  TEST_CASE("evaluation leaves BatchNorm running statistics as they were") {
    Generator gen(3);
    meta::Conv4 model({.in_channels = 1,
                       .image_size = 8,
                       .hidden = 4,
                       .blocks = 2,
                       .ways = 2,
                       .bn_mode = nn::BatchNormMode::RunningStats},
                      &gen);
    ImageSignSampler train(1), held_out(2);
    meta::TrainerConfig config = base_config(meta::Algorithm::Maml, 2);
    config.loss = meta::LossKind::CrossEntropy;
    meta::Trainer trainer(model, train, &held_out, config);
    trainer.train();
    std::vector<std::vector<float>> before;
    for (const auto& [name, b] : model.named_buffers())
      if (b.dtype() == kFloat32) before.push_back(b.to_vector<float>());
    trainer.evaluate(3);
    std::vector<std::vector<float>> after;
    for (const auto& [name, b] : model.named_buffers())
      if (b.dtype() == kFloat32) after.push_back(b.to_vector<float>());
    CHECK(before.size() == 4);
    CHECK(before == after);
  }

  TEST_CASE("classification reports accuracy with its interval") {
    Generator gen(4);
    auto model = nn::make_mlp({.sizes = {2, 8, 2}}, &gen);
    SignSampler train(1), held_out(2);
    meta::TrainerConfig config = base_config(meta::Algorithm::Maml, 3);
    config.loss = meta::LossKind::CrossEntropy;
    config.inner_lr = 0.1;
    meta::Trainer trainer(*model, train, &held_out, config);
    trainer.train();
    const meta::EvalResult r = trainer.evaluate(10);
    CHECK(std::isfinite(r.loss));
    CHECK(r.accuracy >= 0.0);
    CHECK(r.accuracy <= 1.0);
    CHECK(std::isfinite(r.accuracy_ci95));
  }

  TEST_CASE("ProtoNets and iMAML train through the trainer and lower the held-out loss") {
    for (meta::Algorithm algorithm : {meta::Algorithm::ProtoNet, meta::Algorithm::IMaml}) {
      const std::string name = meta::algorithm_name(algorithm);
      CAPTURE(name);
      Generator gen(5);
      // ProtoNets embeds (no classifier head); iMAML adapts a classifier.
      auto model = nn::make_mlp({.sizes = {2, 16, algorithm == meta::Algorithm::ProtoNet ? 8 : 2}}, &gen);
      SignSampler train(11), held_out(12);
      meta::TrainerConfig config = base_config(algorithm, 40);
      config.loss = meta::LossKind::CrossEntropy;
      config.inner_lr = 0.1;
      config.inner_steps = 3;
      config.eval_tasks = 32;
      meta::Trainer trainer(*model, train, &held_out, config);
      const meta::EvalResult before = trainer.evaluate();
      CHECK(trainer.train());
      const meta::EvalResult after = trainer.evaluate();
      MESSAGE(name, ": eval loss ", before.loss, " -> ", after.loss, ", accuracy ", before.accuracy, " -> ",
              after.accuracy);
      CHECK(after.loss < before.loss);
      CHECK(after.accuracy >= 0.0);
    }
  }

  TEST_CASE("a stop request ends training with a resumable last checkpoint and no duplicate CSV rows") {
    const auto dir = scratch_dir("stop");
    meta::TrainerConfig config = base_config(meta::Algorithm::Maml, 12);
    config.output_dir = dir.string();
    config.eval_interval = 4;
    std::atomic<bool> stop{false};
    config.stop_flag = &stop;
    auto straight = tiny_mlp(8);
    {
      meta::SinusoidSampler train(small_tasks(), 3), held_out(small_tasks(), 4);
      meta::TrainerConfig plain = config;
      plain.output_dir.clear();
      meta::Trainer trainer(*straight, train, &held_out, plain);
      CHECK(trainer.train());
    }
    auto model = tiny_mlp(8);
    {
      meta::SinusoidSampler train(small_tasks(), 3), held_out(small_tasks(), 4);
      meta::TrainerConfig first = config;
      first.iterations = 7;  // as if interrupted between evaluations: rows 1..7 are in the CSV
      meta::Trainer trainer(*model, train, &held_out, first);
      trainer.train();
      // Restart the same run from its last evaluation checkpoint (iteration 4): rows 5..7 go.
    }
    {
      auto resumed = tiny_mlp(50);
      meta::SinusoidSampler train(small_tasks(), 3), held_out(small_tasks(), 4);
      meta::Trainer trainer(*resumed, train, &held_out, config);
      trainer.resume((dir / "last.safetensors").string());
      CHECK(trainer.iteration() == 7);  // the first run's end wrote last.safetensors at 7
      stop = true;
      CHECK_FALSE(trainer.train());
      CHECK(trainer.iteration() == 7);
      stop = false;
      meta::Trainer again(*resumed, train, &held_out, config);
      again.resume((dir / "last.safetensors").string());
      CHECK(again.train());
      CHECK(values(*resumed) == values(*straight));
    }
    std::ifstream csv(dir / "metrics.csv");
    std::string line;
    std::getline(csv, line);
    std::vector<int64_t> rows;
    while (std::getline(csv, line)) rows.push_back(std::stoll(line));
    std::vector<int64_t> expected(12);
    for (int64_t i = 0; i < 12; ++i) expected[static_cast<std::size_t>(i)] = i + 1;
    CHECK(rows == expected);
    // A checkpoint holding rows past its step (an interrupted run) drops them on resume.
    {
      auto m = tiny_mlp(8);
      meta::SinusoidSampler train(small_tasks(), 3), held_out(small_tasks(), 4);
      meta::TrainerConfig c = config;
      meta::Trainer t(*m, train, &held_out, c);
      t.resume((dir / "best.safetensors").string());
      const int64_t at = t.iteration();
      CHECK(at < 12);
      std::ifstream again(dir / "metrics.csv");
      std::getline(again, line);
      int64_t last = 0, count = 0;
      while (std::getline(again, line)) last = std::stoll(line), ++count;
      CHECK(last == at);
      CHECK(count == at);
    }
  }

  TEST_CASE("a task-batched meta-batch trains like the loop over its tasks (float32, 1e-6)") {
    for (meta::Algorithm algorithm :
         {meta::Algorithm::Maml, meta::Algorithm::FoMaml, meta::Algorithm::MetaSgd, meta::Algorithm::Anil}) {
      const std::string name = meta::algorithm_name(algorithm);
      CAPTURE(name);
      meta::TrainerConfig config = base_config(algorithm, 3);
      config.anil_head_prefix = "4.";
      config.inner_steps = 2;
      auto looped = tiny_mlp(6), batched = tiny_mlp(6);
      meta::SinusoidSampler a(small_tasks(), 9), b(small_tasks(), 9);
      config.batching = meta::Batching::Looped;
      meta::Trainer looped_trainer(*looped, a, nullptr, config);
      config.batching = meta::Batching::TaskBatched;
      meta::Trainer batched_trainer(*batched, b, nullptr, config);
      CHECK_FALSE(looped_trainer.task_batched());
      CHECK(batched_trainer.task_batched());
      for (int i = 0; i < 3; ++i) {
        const double la = looped_trainer.step(), lb = batched_trainer.step();
        CHECK(std::abs(la - lb) <= 1e-6 * std::abs(la));
      }
      // Three Adam steps from equal meta-gradients: parameters equal up to float32 rounding.
      const auto va = values(*looped), vb = values(*batched);
      double worst = 0.0, scale = 0.0;
      for (std::size_t i = 0; i < va.size(); ++i)
        for (std::size_t j = 0; j < va[i].size(); ++j) {
          worst = std::max(worst, static_cast<double>(std::abs(va[i][j] - vb[i][j])));
          scale = std::max(scale, static_cast<double>(std::abs(va[i][j])));
        }
      MESSAGE(name, ": largest parameter difference after 3 steps ", worst, " (largest parameter ", scale, ")");
      CHECK(worst <= 1e-6 * scale);
    }
    meta::TrainerConfig reptile = base_config(meta::Algorithm::Reptile, 1);
    reptile.batching = meta::Batching::TaskBatched;
    auto model = tiny_mlp(2);
    meta::SinusoidSampler train(small_tasks(), 1);
    CHECK_THROWS_WITH_AS(meta::Trainer(*model, train, nullptr, reptile), doctest::Contains("MAML family"), Error);
    // Auto: batched for the MLP, looped for Reptile, for a checkpointed inner loop and for conv4.
    meta::TrainerConfig automatic = base_config(meta::Algorithm::Maml, 1);
    CHECK_FALSE(meta::Trainer(*model, train, nullptr, automatic).task_batched());  // the default loops
    automatic.batching = meta::Batching::Auto;
    CHECK(meta::Trainer(*model, train, nullptr, automatic).task_batched());
    meta::TrainerConfig reptile_auto = base_config(meta::Algorithm::Reptile, 1);
    reptile_auto.batching = meta::Batching::Auto;
    CHECK_FALSE(meta::Trainer(*model, train, nullptr, reptile_auto).task_batched());
    Generator gen(1);
    meta::Conv4 conv({.image_size = 8, .hidden = 4, .blocks = 2, .ways = 2}, &gen);
    CHECK_FALSE(meta::Trainer(conv, train, nullptr, automatic).task_batched());
    automatic.checkpoint_inner = true;
    CHECK_FALSE(meta::Trainer(*model, train, nullptr, automatic).task_batched());
    // A model big enough for tasks on threads loops on the CPU: in turn on one thread, on threads
    // on two, in turn with the threads turned off.
    automatic.checkpoint_inner = false;
    auto big = tiny_mlp(3, 128);
    REQUIRE(meta::tasks_on_threads_pay(*big));
    const int threads_before = num_threads();
    set_num_threads(1);
    CHECK_FALSE(meta::Trainer(*big, train, nullptr, automatic).task_batched());
    set_num_threads(2);
    if (num_threads() == 2) {  // a build with OpenMP
      const meta::Trainer on_threads(*big, train, nullptr, automatic);
      CHECK_FALSE(on_threads.task_batched());
      CHECK(on_threads.task_threads(automatic.meta_batch) == 2);
      automatic.task_threads = meta::TaskThreads::Off;
      CHECK_FALSE(meta::Trainer(*big, train, nullptr, automatic).task_batched());
    }
    set_num_threads(threads_before);
  }

  TEST_CASE(
      "tasks on threads train exactly like the loop on one thread: every algorithm, BatchNorm buffers, evaluation") {
    const int threads_before = num_threads();
    struct Case {
      meta::Algorithm algorithm;
      bool conv;  // conv4 with running BatchNorm statistics on images, else an MLP on points
    };
    for (const Case c :
         {Case{meta::Algorithm::Maml, false}, Case{meta::Algorithm::Maml, true}, Case{meta::Algorithm::FoMaml, true},
          Case{meta::Algorithm::MetaSgd, false}, Case{meta::Algorithm::Reptile, true},
          Case{meta::Algorithm::ProtoNet, true}, Case{meta::Algorithm::IMaml, false}}) {
      const std::string name = std::string(meta::algorithm_name(c.algorithm)) + (c.conv ? " conv4" : " mlp");
      CAPTURE(name);
      auto make_model = [&]() -> std::shared_ptr<nn::Module> {
        Generator gen(7);
        if (c.conv)
          return std::make_shared<meta::Conv4>(
              meta::Conv4Options{.in_channels = 1,
                                 .image_size = 8,
                                 .hidden = 4,
                                 .blocks = 2,
                                 .ways = c.algorithm == meta::Algorithm::ProtoNet ? 0 : 2,
                                 .bn_mode = nn::BatchNormMode::RunningStats},
              &gen);
        return nn::make_mlp({.sizes = {2, 8, 2}}, &gen);
      };
      const std::shared_ptr<nn::Module> serial_model = make_model(), threaded_model = make_model();
      std::unique_ptr<meta::TaskSampler> serial_tasks, threaded_tasks, held_out;
      if (c.conv) {
        serial_tasks = std::make_unique<ImageSignSampler>(3), threaded_tasks = std::make_unique<ImageSignSampler>(3);
        held_out = std::make_unique<ImageSignSampler>(4);
      } else {
        serial_tasks = std::make_unique<SignSampler>(3), threaded_tasks = std::make_unique<SignSampler>(3);
        held_out = std::make_unique<SignSampler>(4);
      }
      meta::TrainerConfig config = base_config(c.algorithm, 3);
      config.loss = meta::LossKind::CrossEntropy;
      config.inner_lr = 0.1;
      config.inner_steps = 2;
      config.meta_batch = 5;
      config.task_threads = meta::TaskThreads::Off;
      meta::Trainer serial(*serial_model, *serial_tasks, held_out.get(), config);
      config.task_threads = meta::TaskThreads::On;
      meta::Trainer threaded(*threaded_model, *threaded_tasks, held_out.get(), config);
      set_num_threads(2);
      CHECK(threaded.task_threads(5) == num_threads());  // 2, or 1 in a build without OpenMP
      CHECK(serial.task_threads(5) == 1);
      for (int i = 0; i < 3; ++i) {
        set_num_threads(1);
        const double a = serial.step();
        set_num_threads(2);
        const double b = threaded.step();
        CHECK(a == b);
      }
      CHECK(values(*serial_model) == values(*threaded_model));
      for (const auto& [key, buffer] : serial_model->named_buffers()) {
        CAPTURE(key);
        CHECK(buffer.to_vector() == threaded_model->named_buffers().at(key).to_vector());
      }
      set_num_threads(1);
      const meta::EvalResult ea = serial.evaluate(6);
      set_num_threads(2);
      const meta::EvalResult eb = threaded.evaluate(6);
      CHECK(ea.loss == eb.loss);
      CHECK(ea.accuracy == eb.accuracy);
    }
    // Dropout in training draws random numbers: its tasks stay in turn.
    Generator gen(1);
    auto dropout_model = nn::make_mlp({.sizes = {2, 8, 2}, .dropout = 0.5}, &gen);
    SignSampler train(1);
    meta::TrainerConfig on = base_config(meta::Algorithm::Maml, 1);
    on.task_threads = meta::TaskThreads::On;
    meta::Trainer with_dropout(*dropout_model, train, nullptr, on);
    CHECK(with_dropout.task_threads(4) == 1);
    // Auto: small models keep their tasks in turn, where threads would cost more than they gain.
    auto small = nn::make_mlp({.sizes = {2, 8, 2}}, &gen), large = nn::make_mlp({.sizes = {2, 128, 128, 2}}, &gen);
    meta::TrainerConfig automatic = base_config(meta::Algorithm::Maml, 1);
    set_num_threads(2);
    CHECK(meta::Trainer(*small, train, nullptr, automatic).task_threads(4) == 1);
    CHECK(meta::Trainer(*large, train, nullptr, automatic).task_threads(4) == num_threads());
    set_num_threads(threads_before);
  }

  TEST_CASE("unsupported algorithms and bad settings are refused") {
    auto model = tiny_mlp(2);
    meta::SinusoidSampler train(small_tasks(), 1);
    CHECK_THROWS_WITH_AS(meta::Trainer(*model, train, nullptr, base_config(meta::Algorithm::ProtoNet, 1)),
                         doctest::Contains("protonet classifies"), Error);
    CHECK_THROWS_WITH_AS(meta::algorithm_from_name("mamll"), doctest::Contains("unknown algorithm 'mamll'"), Error);
    CHECK(meta::algorithm_from_name("imaml") == meta::Algorithm::IMaml);
    meta::TrainerConfig anil = base_config(meta::Algorithm::Anil, 1);
    anil.anil_head_prefix = "nothing.";
    CHECK_THROWS_AS(meta::Trainer(*model, train, nullptr, anil), Error);
    meta::TrainerConfig graph = base_config(meta::Algorithm::Maml, 1);
    graph.device_graph = true;
    CHECK_THROWS_WITH_AS(meta::Trainer(*model, train, nullptr, graph),
                         doctest::Contains("device graphs need a model on a CUDA device; this one is on cpu"), Error);
  }
}
