#pragma once
// Learning-rate schedules. A scheduler remembers each group's learning rate at construction (its
// base rate) and, at every step(), sets the optimizer's rates to a closed-form function of
// (base rate, epoch); "epoch" is whatever unit step() is called at, in meta-learning usually one
// meta-iteration. As in PyTorch, constructing a scheduler applies epoch 0 at once (so a warm-up
// starts from its start factor), and the optimizer must outlive the scheduler.
//
// Being closed forms, the rates depend only on the epoch: a rate set by hand between steps is
// overwritten at the next step (PyTorch's chainable forms would build on it), and the rates agree
// with PyTorch's to rounding (about 1e-15 relative).
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "optimizer.h"

namespace mg::nn {

class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  const std::string& type_name() const { return type_; }
  // Each group's learning rate at last_epoch().
  std::vector<double> get_lr() const;
  // Advances one epoch and sets the optimizer's learning rates.
  void step();
  int64_t last_epoch() const { return last_epoch_; }
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  // The schedule itself: the rate at epoch for a group whose base rate is base_lr.
  virtual double lr_at(double base_lr, int64_t epoch) const = 0;

  // last_epoch, base rates and settings as text, keys prefixed; they fit a safetensors file's
  // metadata next to the optimizer's (state_dict("scheduler.")).
  std::map<std::string, std::string> state_dict(const std::string& prefix = "") const;
  // Restores them (settings included, as PyTorch does) and sets the optimizer's rates for the
  // restored epoch. Checks the type, the number of groups and every value before changing
  // anything; entries under prefix that are not the scheduler's are an error.
  void load_state_dict(const std::map<std::string, std::string>& metadata, const std::string& prefix = "");

 protected:
  LRScheduler(std::string type, Optimizer& optimizer);
  // Sets the optimizer's rates for last_epoch(); each schedule's constructor ends with it.
  void apply();
  std::string where() const { return type_ + ": "; }
  virtual void write_settings(MetadataWriter& out) const = 0;
  // Parses and validates the settings; returns their assignment, run once all is checked.
  virtual std::function<void()> read_settings(const MetadataReader& in) = 0;

 private:
  std::string type_;
  Optimizer* optimizer_;
  std::vector<double> base_lrs_;
  int64_t last_epoch_ = 0;
};

// lr = base_lr * gamma^floor(epoch / step_size).
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);
  double lr_at(double base_lr, int64_t epoch) const override;

 protected:
  void write_settings(MetadataWriter& out) const override;
  std::function<void()> read_settings(const MetadataReader& in) override;

 private:
  int64_t step_size_;
  double gamma_;
};

// lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / t_max)) / 2: from base_lr down to
// eta_min at t_max, then back up (a period of 2 t_max), as PyTorch's CosineAnnealingLR.
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t t_max, double eta_min = 0.0);
  double lr_at(double base_lr, int64_t epoch) const override;

 protected:
  void write_settings(MetadataWriter& out) const override;
  std::function<void()> read_settings(const MetadataReader& in) override;

 private:
  int64_t t_max_;
  double eta_min_;
};

// Linear warm-up over warmup_steps epochs from start_factor * base_lr to base_lr:
//   lr = base_lr * (start_factor + (1 - start_factor) * epoch / warmup_steps)   for epoch < warmup_steps,
// then base_lr, or, with decay_steps > 0, a cosine decay to eta_min that stays there:
//   lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * min(epoch - warmup_steps, decay_steps) / decay_steps)) / 2.
// The warm-up is PyTorch's LinearLR(start_factor, 1.0, warmup_steps); with the decay it is
// SequentialLR([LinearLR, CosineAnnealingLR(decay_steps, eta_min)], milestones=[warmup_steps])
// up to epoch warmup_steps + decay_steps (beyond it PyTorch's cosine would rise again).
class LinearWarmup : public LRScheduler {
 public:
  LinearWarmup(Optimizer& optimizer, int64_t warmup_steps, double start_factor, int64_t decay_steps = 0,
               double eta_min = 0.0);
  double lr_at(double base_lr, int64_t epoch) const override;

 protected:
  void write_settings(MetadataWriter& out) const override;
  std::function<void()> read_settings(const MetadataReader& in) override;

 private:
  int64_t warmup_steps_;
  double start_factor_;
  int64_t decay_steps_;
  double eta_min_;
};

}  // namespace mg::nn
