#pragma once
// Everything that defines a run's tasks and model, read from the command line, written into every
// checkpoint (as "run.*" metadata) and read back by `metagrad eval`, so a checkpoint alone says how
// to rebuild its model and tasks.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../meta/models.h"
#include "../meta/omniglot.h"
#include "../meta/task.h"
#include "../meta/trainer.h"
#include "../meta/words.h"
#include "arguments.h"

namespace mg::app {

enum class TaskKind { Sinusoid, Omniglot, Words };

struct RunSpec {
  TaskKind task = TaskKind::Sinusoid;
  std::string data;  // folder; unused for sinusoid
  meta::Algorithm algorithm = meta::Algorithm::Maml;
  std::string model;   // "" = the task's default
  int64_t hidden = 0;  // 0 = the model's default
  int64_t layers = 0;  // 0 = the model's default
  int64_t ways = 5;
  int64_t shots = 1;
  int64_t queries = 15;
  int64_t eval_queries = 0;  // query points of evaluation tasks; 0 = queries
  std::string bn_mode = "transductive";
  int64_t inner_steps = 1;  // for per-step BatchNorm statistics
  // "all", or "train,val,test" fractions of the classes; explicit lists override a part.
  std::string split = "all";
  std::string split_level = "character";  // omniglot: character or alphabet
  uint64_t split_seed = 0;
  std::string train_classes, val_classes, test_classes;  // comma-separated names
  bool within_alphabet = false;
  bool rotations = true;
  uint64_t seed = 0;

  // Task-dependent defaults filled in (model, split).
  void apply_task_defaults();
  std::map<std::string, std::string> to_metadata() const;  // "run.<field>"
  static RunSpec from_metadata(const std::map<std::string, std::string>& metadata, const std::string& file);
  std::string describe() const;  // one line per setting, for the run summary
};

const char* task_name(TaskKind task);
TaskKind task_from_name(const std::string& name);

// The flags that set RunSpec fields (shared by train and eval), and reading them into a spec
// (fields not given keep the spec's values).
std::vector<FlagSpec> run_spec_flags();
void read_run_spec(const Arguments& args, RunSpec& spec);

enum class Part { Train, Val, Test, All };

// Loaded data for a spec: the datasets are read once and shared by every part's sampler.
class TaskSource {
 public:
  explicit TaskSource(const RunSpec& spec);
  // A sampler over one part of the classes with its own task stream (seed), or null when the part
  // has no classes (a fraction of 0). Errors name the part and say how to fix them.
  std::unique_ptr<meta::TaskSampler> sampler(Part part, uint64_t seed, int64_t queries = 0) const;
  bool classification() const { return spec_.task != TaskKind::Sinusoid; }
  std::string describe_data() const;

 private:
  meta::ClassSplit class_split(Part part) const;
  RunSpec spec_;
  std::shared_ptr<const meta::OmniglotDataset> omniglot_;
  std::shared_ptr<const meta::WordsDataset> words_;
};

meta::ModelSpec model_spec(const RunSpec& spec);
std::shared_ptr<nn::Module> build_model(const RunSpec& spec, uint64_t seed);
std::string batchnorm_description(const RunSpec& spec);

}  // namespace mg::app
