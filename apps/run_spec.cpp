#include "run_spec.h"

#include <filesystem>
#include <sstream>

#include "../meta/sinusoid.h"
#include "../tensor/error.h"

namespace mg::app {

namespace {

const char* part_name(Part part) {
  switch (part) {
    case Part::Train:
      return "training";
    case Part::Val:
      return "validation";
    case Part::Test:
      return "test";
    case Part::All:
      return "evaluation";
  }
  return "?";
}

meta::SplitFractions parse_fractions(const std::string& text) {
  const std::vector<std::string> parts = split_list(text);
  MG_CHECK(parts.size() == 3, "--split expects 'all' or three fractions train,val,test (e.g. 0.7,0.1,0.2), got '", text,
           "'");
  double f[3];
  for (int i = 0; i < 3; ++i) {
    std::size_t used = 0;
    try {
      f[i] = std::stod(parts[static_cast<std::size_t>(i)], &used);
    } catch (const std::exception&) {
      used = 0;
    }
    MG_CHECK(used == parts[static_cast<std::size_t>(i)].size() && used > 0, "--split: '",
             parts[static_cast<std::size_t>(i)], "' is not a number");
  }
  return {f[0], f[1], f[2]};
}

uint64_t parse_u64(const std::string& text, const std::string& what) {
  std::size_t used = 0;
  uint64_t v = 0;
  try {
    v = std::stoull(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  MG_CHECK(used == text.size() && used > 0 && text[0] != '-', what, " expects a non-negative integer, got '", text,
           "'");
  return v;
}

nn::BatchNormMode bn_mode_from_name(const std::string& name) {
  if (name == "transductive") return nn::BatchNormMode::Transductive;
  if (name == "running") return nn::BatchNormMode::RunningStats;
  if (name == "per-step") return nn::BatchNormMode::PerStep;
  MG_FAIL("unknown --bn-mode '", name, "' (known: transductive, running, per-step)");
}

// The official Omniglot archives unpack to images_background/ and images_evaluation/; a folder
// holding either is read as the union of the two, any other folder as <alphabet>/<character>/.
std::vector<std::filesystem::path> omniglot_roots(const std::filesystem::path& path) {
  std::vector<std::filesystem::path> roots;
  for (const char* sub : {"images_background", "images_evaluation"})
    if (std::filesystem::is_directory(path / sub)) roots.push_back(path / sub);
  if (roots.empty()) roots.push_back(path);
  return roots;
}

}  // namespace

const char* task_name(TaskKind task) {
  switch (task) {
    case TaskKind::Sinusoid:
      return "sinusoid";
    case TaskKind::Omniglot:
      return "omniglot";
    case TaskKind::Words:
      return "words";
  }
  return "?";
}

TaskKind task_from_name(const std::string& name) {
  if (name == "sinusoid") return TaskKind::Sinusoid;
  if (name == "omniglot") return TaskKind::Omniglot;
  if (name == "words") return TaskKind::Words;
  MG_FAIL("unknown task '", name, "' (known: sinusoid, omniglot, words)");
}

void RunSpec::apply_task_defaults() {
  switch (task) {
    case TaskKind::Sinusoid:
      model = "mlp";
      shots = 10;
      queries = 10;
      eval_queries = 100;
      split = "all";
      break;
    case TaskKind::Omniglot:
      model = "conv4";
      ways = 5;
      shots = 1;
      queries = 15;
      split = "0.7,0.1,0.2";
      break;
    case TaskKind::Words:
      model = "transformer";
      ways = 5;
      shots = 5;
      queries = 5;
      // 16 languages: 11 to train on, 5 held out, no validation languages.
      split = "0.6875,0,0.3125";
      break;
  }
}

std::vector<FlagSpec> run_spec_flags() {
  return {
      {"task", "sinusoid | omniglot | words (default sinusoid)", false, "NAME"},
      {"data", "data folder (omniglot: <root>/<alphabet>/<character>/*.png; words: <root>/<lang>.txt)", false, "PATH"},
      {"model", "mlp | conv4 | transformer (default: the task's)", false, "NAME"},
      {"hidden", "model width (mlp 40, conv4 64 channels, transformer d_model 64)", false, "N"},
      {"layers", "model depth (mlp 2 hidden, conv4 4 blocks, transformer 2 layers)", false, "N"},
      {"ways", "classes per task (default 5)", false, "N"},
      {"shots", "support examples per class (sinusoid: points; default 10 / 1 / 5)", false, "K"},
      {"queries", "query examples per class (sinusoid: points; default 10 / 15 / 5)", false, "Q"},
      {"eval-queries", "query examples of evaluation tasks (default: sinusoid 100, else --queries)", false, "Q"},
      {"bn-mode", "BatchNorm statistics: transductive | running | per-step (default transductive)", false, "MODE"},
      {"split", "'all' or class fractions train,val,test (default: omniglot 0.7,0.1,0.2; words 0.6875,0,0.3125)", false,
       "SPEC"},
      {"split-level", "omniglot: split characters or whole alphabets (default character)", false, "LEVEL"},
      {"split-seed", "seed of the class split (default 0)", false, "N"},
      {"train-classes", "explicit training classes, comma-separated (overrides --split's part)", false, "LIST"},
      {"val-classes", "explicit validation classes", false, "LIST"},
      {"test-classes", "explicit test classes", false, "LIST"},
      {"within-alphabet", "omniglot: draw each task's classes from one alphabet", true},
      {"no-rotations", "omniglot: no 90/180/270 degree rotations as extra classes", true},
  };
}

void read_run_spec(const Arguments& args, RunSpec& spec) {
  spec.data = args.text("data", spec.data);
  spec.model = args.text("model", spec.model);
  spec.hidden = args.integer("hidden", spec.hidden, 1);
  spec.layers = args.integer("layers", spec.layers, 1);
  spec.ways = args.integer("ways", spec.ways, 1);
  spec.shots = args.integer("shots", spec.shots, 1);
  spec.queries = args.integer("queries", spec.queries, 1);
  spec.eval_queries = args.integer("eval-queries", spec.eval_queries, 1);
  spec.bn_mode = args.text("bn-mode", spec.bn_mode);
  bn_mode_from_name(spec.bn_mode);
  spec.split = args.text("split", spec.split);
  if (spec.split != "all") parse_fractions(spec.split);
  spec.split_level = args.text("split-level", spec.split_level);
  MG_CHECK(spec.split_level == "character" || spec.split_level == "alphabet",
           "--split-level must be character or alphabet, got '", spec.split_level, "'");
  if (auto s = args.text("split-seed")) spec.split_seed = parse_u64(*s, "--split-seed");
  spec.train_classes = args.text("train-classes", spec.train_classes);
  spec.val_classes = args.text("val-classes", spec.val_classes);
  spec.test_classes = args.text("test-classes", spec.test_classes);
  if (args.flag("within-alphabet")) spec.within_alphabet = true;
  if (args.flag("no-rotations")) spec.rotations = false;
  MG_CHECK(spec.task == TaskKind::Sinusoid || !spec.data.empty(), "--task ", task_name(spec.task),
           " needs --data PATH (the folder of its ", spec.task == TaskKind::Omniglot ? "alphabets" : "word lists", ")");
}

std::map<std::string, std::string> RunSpec::to_metadata() const {
  std::map<std::string, std::string> m;
  m["run.task"] = task_name(task);
  m["run.data"] = data;
  m["run.algorithm"] = meta::algorithm_name(algorithm);
  m["run.model"] = model;
  m["run.hidden"] = std::to_string(hidden);
  m["run.layers"] = std::to_string(layers);
  m["run.ways"] = std::to_string(ways);
  m["run.shots"] = std::to_string(shots);
  m["run.queries"] = std::to_string(queries);
  m["run.eval_queries"] = std::to_string(eval_queries);
  m["run.bn_mode"] = bn_mode;
  m["run.inner_steps"] = std::to_string(inner_steps);
  m["run.split"] = split;
  m["run.split_level"] = split_level;
  m["run.split_seed"] = std::to_string(split_seed);
  m["run.train_classes"] = train_classes;
  m["run.val_classes"] = val_classes;
  m["run.test_classes"] = test_classes;
  m["run.within_alphabet"] = within_alphabet ? "1" : "0";
  m["run.rotations"] = rotations ? "1" : "0";
  m["run.seed"] = std::to_string(seed);
  return m;
}

RunSpec RunSpec::from_metadata(const std::map<std::string, std::string>& m, const std::string& file) {
  auto get = [&](const std::string& key) -> const std::string& {
    const auto it = m.find("run." + key);
    MG_CHECK(it != m.end(), file, " was not written by 'metagrad train' (no run.", key,
             " entry): cannot tell which model and tasks it belongs to");
    return it->second;
  };
  auto integer = [&](const std::string& key) {
    return static_cast<int64_t>(parse_u64(get(key), file + ": run." + key));
  };
  RunSpec s;
  s.task = task_from_name(get("task"));
  s.data = get("data");
  s.algorithm = meta::algorithm_from_name(get("algorithm"));
  s.model = get("model");
  s.hidden = integer("hidden");
  s.layers = integer("layers");
  s.ways = integer("ways");
  s.shots = integer("shots");
  s.queries = integer("queries");
  s.eval_queries = integer("eval_queries");
  s.bn_mode = get("bn_mode");
  s.inner_steps = static_cast<int>(integer("inner_steps"));
  s.split = get("split");
  s.split_level = get("split_level");
  s.split_seed = static_cast<uint64_t>(integer("split_seed"));
  s.train_classes = get("train_classes");
  s.val_classes = get("val_classes");
  s.test_classes = get("test_classes");
  s.within_alphabet = get("within_alphabet") == "1";
  s.rotations = get("rotations") == "1";
  s.seed = static_cast<uint64_t>(integer("seed"));
  return s;
}

std::string RunSpec::describe() const {
  std::ostringstream out;
  out << "task " << task_name(task);
  const int64_t eval_q = eval_queries > 0 ? eval_queries : queries;
  if (task != TaskKind::Sinusoid)
    out << " (" << ways << "-way " << shots << "-shot, " << queries << " queries/class, " << eval_q
        << " in evaluation)";
  else
    out << " (" << shots << " support, " << queries << " query points, " << eval_q << " in evaluation)";
  out << "\nmodel " << model << (hidden ? " hidden " + std::to_string(hidden) : "")
      << (layers ? " layers " + std::to_string(layers) : "");
  if (task != TaskKind::Sinusoid) {
    out << "\nclasses split " << split << " (" << (task == TaskKind::Omniglot ? split_level + " level, " : "")
        << "seed " << split_seed << ")";
    if (task == TaskKind::Omniglot)
      out << (rotations ? ", rotations as classes" : ", no rotations") << (within_alphabet ? ", within alphabet" : "");
  }
  return out.str();
}

TaskSource::TaskSource(const RunSpec& spec) : spec_(spec) {
  if (spec.task == TaskKind::Omniglot) {
    MG_CHECK(std::filesystem::is_directory(spec.data), "omniglot data folder '", spec.data, "' does not exist");
    auto dataset = std::make_shared<meta::OmniglotDataset>(omniglot_roots(spec.data));
    // Every image decoded now: a corrupt file stops the run before training, not hours into it.
    dataset->preload();
    omniglot_ = dataset;
  } else if (spec.task == TaskKind::Words) {
    MG_CHECK(std::filesystem::is_directory(spec.data), "words data folder '", spec.data, "' does not exist");
    words_ = std::make_shared<meta::WordsDataset>(spec.data);
  }
}

meta::ClassSplit TaskSource::class_split(Part part) const {
  const std::string& explicit_list = part == Part::Train  ? spec_.train_classes
                                     : part == Part::Val  ? spec_.val_classes
                                     : part == Part::Test ? spec_.test_classes
                                                          : std::string();
  if (!explicit_list.empty()) return meta::ClassSplit::names(split_list(explicit_list));
  if (part == Part::All || spec_.split == "all") return meta::ClassSplit::all();
  const meta::SplitPart p = part == Part::Train ? meta::SplitPart::Train
                            : part == Part::Val ? meta::SplitPart::Val
                                                : meta::SplitPart::Test;
  return meta::ClassSplit::part(p, parse_fractions(spec_.split), spec_.split_seed);
}

std::unique_ptr<meta::TaskSampler> TaskSource::sampler(Part part, uint64_t seed, int64_t queries) const {
  if (queries <= 0) queries = spec_.queries;
  if (spec_.task == TaskKind::Sinusoid) {
    meta::SinusoidOptions o;
    o.shots = spec_.shots;
    o.queries = queries;
    return std::make_unique<meta::SinusoidSampler>(o, seed);
  }
  const meta::ClassSplit split = class_split(part);
  if (part == Part::Val && spec_.val_classes.empty() && spec_.split != "all" && parse_fractions(spec_.split).val == 0.0)
    return nullptr;
  try {
    if (spec_.task == TaskKind::Omniglot) {
      meta::OmniglotTaskOptions o;
      o.ways = spec_.ways;
      o.shots = spec_.shots;
      o.queries = queries;
      o.rotations = spec_.rotations;
      o.within_alphabet = spec_.within_alphabet;
      o.split_level = spec_.split_level == "alphabet" ? meta::SplitLevel::Alphabet : meta::SplitLevel::Character;
      o.split = split;
      return std::make_unique<meta::OmniglotSampler>(omniglot_, o, seed);
    }
    meta::WordsTaskOptions o;
    o.ways = spec_.ways;
    o.shots = spec_.shots;
    o.queries = queries;
    o.split = split;
    return std::make_unique<meta::WordsSampler>(*words_, o, seed);
  } catch (const Error& e) {
    MG_FAIL("the ", part_name(part), " classes (", split.describe(), ") cannot make ", spec_.ways, "-way ", spec_.shots,
            "-shot tasks with ", queries, " queries: ", e.what());
  }
}

std::string TaskSource::describe_data() const {
  std::ostringstream out;
  if (omniglot_) {
    out << omniglot_->describe_roots() << ": " << omniglot_->alphabets().size() << " alphabets, "
        << omniglot_->characters().size() << " characters";
  } else if (words_) {
    out << spec_.data << ": " << words_->languages().size() << " languages";
  } else {
    out << "generated sinusoids";
  }
  return out.str();
}

meta::ModelSpec model_spec(const RunSpec& spec) {
  meta::ModelSpec m;
  m.name = spec.model;
  m.hidden = spec.hidden;
  m.layers = spec.layers;
  m.bn_mode = bn_mode_from_name(spec.bn_mode);
  // Per-step statistics: one set per inner step and one for the query pass after the last.
  m.bn_steps = m.bn_mode == nn::BatchNormMode::PerStep ? spec.inner_steps + 1 : 1;
  if (spec.task == TaskKind::Sinusoid) {
    m.outputs = 1;
  } else if (spec.algorithm == meta::Algorithm::ProtoNet) {
    // ProtoNets classifies by distances between embeddings: conv4 without its head, the others
    // with a head as wide as the model.
    m.outputs = spec.model == "conv4" ? 0 : (spec.hidden > 0 ? spec.hidden : (spec.model == "mlp" ? 40 : 64));
  } else {
    m.outputs = spec.ways;
  }
  if (spec.task == TaskKind::Omniglot) {
    MG_CHECK(spec.model == "conv4", "--task omniglot needs --model conv4, not '", spec.model, "'");
  }
  if (spec.task == TaskKind::Words)
    MG_CHECK(spec.model == "transformer", "--task words needs --model transformer, not '", spec.model, "'");
  if (spec.task == TaskKind::Sinusoid)
    MG_CHECK(spec.model == "mlp", "--task sinusoid needs --model mlp, not '", spec.model, "'");
  return m;
}

std::shared_ptr<nn::Module> build_model(const RunSpec& spec, uint64_t seed) {
  Generator gen(seed);
  return meta::make_model(model_spec(spec), &gen);
}

std::string batchnorm_description(const RunSpec& spec) {
  if (spec.model != "conv4") return "none (the model has no BatchNorm)";
  if (spec.bn_mode == "transductive")
    return "transductive (each forward pass normalises with its own batch statistics, support and query alike)";
  if (spec.bn_mode == "running")
    return "running (PyTorch's train-mode semantics: batch statistics, running averages updated and saved)";
  return "per-step (MAML++: batch statistics, one set of running averages per inner step; affine parameters "
         "shared)";
}

}  // namespace mg::app
