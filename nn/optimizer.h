#pragma once
// Optimizers for the outer loop of meta-learning (the inner loop is functional SGD, written with
// differentiable ops so that meta-gradients flow through it). An optimizer updates its parameters
// in place, with recording off, from the gradients backward() left in .grad(); parameters without
// a gradient are skipped, as torch.optim does. Update rules follow torch.optim of PyTorch 1.13
// (its single-tensor code path), so results and hyperparameters carry over.
//
// Checkpoints: state_dict() gives the tensor state (momentum buffers, moment estimates) and the
// scalars (hyperparameters per group, step counters) as text, which together fit one safetensors
// file; load_state_dict() restores them so that training continues bit for bit:
//   auto s = opt.state_dict("optimizer.");
//   save_safetensors(path, s.tensors, s.metadata);
//   auto f = load_safetensors(path);
//   opt.load_state_dict(f.tensors, f.metadata, "optimizer.");
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "../tensor/tensor.h"
#include "tensor_dict.h"

namespace mg::nn {

// The parameters of one group. Names (Module::named_parameters) are optional; when the optimizer
// and a loaded state both have them, load_state_dict checks that they agree.
// Implicit, so that a list of tensors or a module's named_parameters() can be passed as is.
struct ParamList {
  ParamList(std::vector<Tensor> tensors);
  ParamList(std::initializer_list<Tensor> tensors);
  ParamList(const TensorDict& named);

  std::vector<Tensor> tensors;
  std::vector<std::string> names;  // empty, or one per tensor
};

// A group with its own hyperparameters (e.g. no weight decay for biases and norms).
template <typename Options>
struct ParamGroup {
  ParamList params;
  Options options;
};

// Everything an optimizer saves. Tensor state is keyed "state.<i>.<name>", i being the
// parameter's position over all groups in order (torch.optim's numbering); scalars are text.
struct OptimizerState {
  TensorDict tensors;
  std::map<std::string, std::string> metadata;
};

// Writes scalars as text under a key prefix. Doubles use the shortest form that reads back to
// the same bits (std::to_chars), which exact resumption relies on.
class MetadataWriter {
 public:
  MetadataWriter(std::map<std::string, std::string>& out, std::string prefix);
  void put_double(std::string_view key, double value);
  void put_int(std::string_view key, int64_t value);
  void put_bool(std::string_view key, bool value);
  void put_text(std::string_view key, std::string value);
  MetadataWriter sub(std::string_view prefix) const;

 private:
  std::map<std::string, std::string>* out_;
  std::string prefix_;
};

// Reads scalars written by MetadataWriter. Every failure is an mg::Error that starts with the
// context (e.g. "Adam.load_state_dict") and names the full key. It records the keys it read, so
// that check_all_used() can reject keys under the prefix that nothing expected (a state written
// by another optimizer or a newer version).
class MetadataReader {
 public:
  MetadataReader(const std::map<std::string, std::string>& in, std::string prefix, std::string context);
  bool has(std::string_view key) const;
  const std::string& text(std::string_view key) const;
  double get_double(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  MetadataReader sub(std::string_view prefix) const;  // shares the record of keys read
  const std::string& context() const { return context_; }
  std::string full_key(std::string_view key) const { return prefix_ + std::string(key); }
  // Marks a key as expected without reading it (tensor keys are checked by the caller).
  void mark_used(std::string_view key) const;
  // Throws naming the first key under the root prefix that was never read.
  void check_all_used() const;

 private:
  const std::map<std::string, std::string>* in_;
  std::string root_;
  std::string prefix_;
  std::string context_;
  std::shared_ptr<std::set<std::string>> used_;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // "SGD", "Adam", "AdamW": used in messages and stored in the state.
  const std::string& type_name() const { return type_; }

  // One update of every parameter that has a gradient.
  virtual void step() = 0;
  // set_to_none (the default, as in PyTorch 2) drops the gradients, so that a parameter the next
  // backward does not reach is skipped by step(); otherwise they are zero-filled in place, and a
  // zero gradient still moves momentum and Adam's moments.
  void zero_grad(bool set_to_none = true);

  std::size_t num_groups() const { return groups_.size(); }
  std::size_t num_params() const { return state_.size(); }
  const std::vector<Tensor>& params(std::size_t group) const;
  const std::vector<std::string>& param_names(std::size_t group) const;
  virtual double lr(std::size_t group = 0) const = 0;
  // Throws unless lr is finite and >= 0.
  void set_lr(double lr, std::size_t group);
  void set_lr(double lr);  // every group

  // The live buffers, not copies: clone them to keep a snapshot across further steps. prefix is
  // put before every key, so one file can hold the model, the optimizer and the scheduler.
  OptimizerState state_dict(const std::string& prefix = "") const;
  // Replaces hyperparameters and state with the saved ones (as torch.optim does). Only keys that
  // start with prefix are read, so a whole checkpoint can be passed. Checks everything before
  // changing anything: the optimizer type, the number of groups and of parameters in each, the
  // parameter names (when both sides have them), each state tensor's shape, and that no key
  // under the prefix is unknown or missing. State tensors are copied to the parameter's dtype
  // and device.
  void load_state_dict(const TensorDict& tensors, const std::map<std::string, std::string>& metadata,
                       const std::string& prefix = "");
  void load_state_dict(const OptimizerState& state, const std::string& prefix = "") {
    load_state_dict(state.tensors, state.metadata, prefix);
  }

 protected:
  struct ParamState {
    int64_t step = 0;    // updates this parameter has had; per parameter since some may be skipped
    TensorDict buffers;  // "momentum_buffer", "exp_avg", ...
  };

  Optimizer(std::string type, std::vector<ParamList> groups);

  // Calls fn(group, index, param, grad) for each parameter with a gradient, with recording off;
  // grad is detached (a gradient from create_graph carries history that an update must not extend).
  void for_each_param_with_grad(const std::function<void(std::size_t, std::size_t, Tensor&, const Tensor&)>& fn);
  ParamState& state(std::size_t index) { return state_[index]; }
  // "<type>: " for messages about the options.
  std::string where() const { return type_ + ": "; }

  // --- what each optimizer describes about itself for state_dict / load_state_dict ---
  virtual void set_group_lr(std::size_t group, double lr) = 0;
  virtual void write_hyperparameters(std::size_t group, MetadataWriter& out) const = 0;
  // Parses and validates every group's hyperparameters (group g's under "param_groups.<g>.") and
  // returns the assignment, which runs only once the whole state has been checked.
  virtual std::function<void()> read_hyperparameters(const MetadataReader& in) = 0;
  // The per-parameter tensors this optimizer may keep, and those a parameter must have once it
  // has any state.
  virtual std::vector<std::string> state_names() const = 0;
  virtual std::vector<std::string> required_state_names() const { return {}; }
  // Whether per-parameter step counters are part of the state (Adam's bias correction).
  virtual bool counts_steps() const { return false; }

 private:
  std::string type_;
  std::vector<ParamList> groups_;
  std::vector<std::size_t> group_start_;  // flat index of each group's first parameter
  std::vector<ParamState> state_;
};

namespace detail {
// Shared checks of optimizer and scheduler settings; throw mg::Error starting with where.
void check_lr(const std::string& where, double lr);
void check_non_negative(const std::string& where, const char* name, double value);
void check_unit_interval(const std::string& where, const char* name, double value);  // [0, 1)
}  // namespace detail

}  // namespace mg::nn
