#include "lr_scheduler.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <utility>

namespace mg::nn {

// ---------------------------------------------------------------------------------------------
// LRScheduler
// ---------------------------------------------------------------------------------------------

LRScheduler::LRScheduler(std::string type, Optimizer& optimizer) : type_(std::move(type)), optimizer_(&optimizer) {
  for (std::size_t g = 0; g < optimizer.num_groups(); ++g) base_lrs_.push_back(optimizer.lr(g));
}

std::vector<double> LRScheduler::get_lr() const {
  std::vector<double> out;
  for (double base : base_lrs_) out.push_back(lr_at(base, last_epoch_));
  return out;
}

void LRScheduler::apply() {
  const std::vector<double> lrs = get_lr();
  for (std::size_t g = 0; g < lrs.size(); ++g) optimizer_->set_lr(lrs[g], g);
}

void LRScheduler::step() {
  ++last_epoch_;
  apply();
}

std::map<std::string, std::string> LRScheduler::state_dict(const std::string& prefix) const {
  std::map<std::string, std::string> out;
  MetadataWriter meta(out, prefix);
  meta.put_text("type", type_);
  meta.put_int("last_epoch", last_epoch_);
  meta.put_int("num_groups", static_cast<int64_t>(base_lrs_.size()));
  for (std::size_t g = 0; g < base_lrs_.size(); ++g) meta.put_double("base_lrs." + std::to_string(g), base_lrs_[g]);
  write_settings(meta);
  return out;
}

void LRScheduler::load_state_dict(const std::map<std::string, std::string>& metadata, const std::string& prefix) {
  const std::string context = type_ + ".load_state_dict";
  const MetadataReader in(metadata, prefix, context);
  const std::string& saved_type = in.text("type");
  MG_CHECK(saved_type == type_, context, ": the state is that of a ", saved_type, " scheduler, not ", type_);
  const int64_t last_epoch = in.get_int("last_epoch");
  MG_CHECK(last_epoch >= 0, context, ": entry '", in.full_key("last_epoch"), "' is ", last_epoch,
           "; it must be >= 0");
  const int64_t groups = in.get_int("num_groups");
  MG_CHECK(groups == static_cast<int64_t>(base_lrs_.size()), context, ": the state has ", groups,
           " parameter groups but the optimizer has ", base_lrs_.size());
  std::vector<double> base_lrs;
  for (std::size_t g = 0; g < base_lrs_.size(); ++g) {
    base_lrs.push_back(in.get_double("base_lrs." + std::to_string(g)));
    detail::check_lr(context + ": base_lrs." + std::to_string(g) + ": ", base_lrs.back());
  }
  const std::function<void()> commit_settings = read_settings(in);
  in.check_all_used();

  commit_settings();
  base_lrs_ = std::move(base_lrs);
  last_epoch_ = last_epoch;
  apply();
}

// ---------------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------------

namespace {

void check_steps(const std::string& where, const char* name, int64_t value, int64_t least) {
  MG_CHECK(value >= least, where, "invalid ", name, " ", value, " (must be >= ", least, ")");
}

double cosine(double base_lr, double eta_min, double t, double period) {
  return eta_min + (base_lr - eta_min) * (1.0 + std::cos(std::numbers::pi * t / period)) / 2.0;
}

}  // namespace

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LRScheduler("StepLR", optimizer), step_size_(step_size), gamma_(gamma) {
  check_steps(where(), "step_size", step_size, 1);
  detail::check_non_negative(where(), "gamma", gamma);
  apply();
}

double StepLR::lr_at(double base_lr, int64_t epoch) const {
  return base_lr * std::pow(gamma_, static_cast<double>(epoch / step_size_));
}

void StepLR::write_settings(MetadataWriter& out) const {
  out.put_int("step_size", step_size_);
  out.put_double("gamma", gamma_);
}

std::function<void()> StepLR::read_settings(const MetadataReader& in) {
  const int64_t step_size = in.get_int("step_size");
  const double gamma = in.get_double("gamma");
  check_steps(in.context() + ": ", "step_size", step_size, 1);
  detail::check_non_negative(in.context() + ": ", "gamma", gamma);
  return [this, step_size, gamma] {
    step_size_ = step_size;
    gamma_ = gamma;
  };
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t t_max, double eta_min)
    : LRScheduler("CosineAnnealingLR", optimizer), t_max_(t_max), eta_min_(eta_min) {
  check_steps(where(), "t_max", t_max, 1);
  detail::check_non_negative(where(), "eta_min", eta_min);
  apply();
}

double CosineAnnealingLR::lr_at(double base_lr, int64_t epoch) const {
  return cosine(base_lr, eta_min_, static_cast<double>(epoch), static_cast<double>(t_max_));
}

void CosineAnnealingLR::write_settings(MetadataWriter& out) const {
  out.put_int("t_max", t_max_);
  out.put_double("eta_min", eta_min_);
}

std::function<void()> CosineAnnealingLR::read_settings(const MetadataReader& in) {
  const int64_t t_max = in.get_int("t_max");
  const double eta_min = in.get_double("eta_min");
  check_steps(in.context() + ": ", "t_max", t_max, 1);
  detail::check_non_negative(in.context() + ": ", "eta_min", eta_min);
  return [this, t_max, eta_min] {
    t_max_ = t_max;
    eta_min_ = eta_min;
  };
}

namespace {

void check_warmup(const std::string& where, int64_t warmup_steps, double start_factor, int64_t decay_steps,
                  double eta_min) {
  check_steps(where, "warmup_steps", warmup_steps, 0);
  MG_CHECK(start_factor >= 0 && start_factor <= 1, where, "invalid start_factor ", start_factor,
           " (must be in [0, 1])");
  check_steps(where, "decay_steps", decay_steps, 0);
  detail::check_non_negative(where, "eta_min", eta_min);
}

}  // namespace

LinearWarmup::LinearWarmup(Optimizer& optimizer, int64_t warmup_steps, double start_factor, int64_t decay_steps,
                           double eta_min)
    : LRScheduler("LinearWarmup", optimizer),
      warmup_steps_(warmup_steps),
      start_factor_(start_factor),
      decay_steps_(decay_steps),
      eta_min_(eta_min) {
  check_warmup(where(), warmup_steps, start_factor, decay_steps, eta_min);
  apply();
}

double LinearWarmup::lr_at(double base_lr, int64_t epoch) const {
  if (epoch < warmup_steps_) {
    return base_lr * (start_factor_ + (1.0 - start_factor_) * static_cast<double>(epoch) /
                                          static_cast<double>(warmup_steps_));
  }
  if (decay_steps_ == 0) return base_lr;
  const int64_t t = std::min(epoch - warmup_steps_, decay_steps_);
  return cosine(base_lr, eta_min_, static_cast<double>(t), static_cast<double>(decay_steps_));
}

void LinearWarmup::write_settings(MetadataWriter& out) const {
  out.put_int("warmup_steps", warmup_steps_);
  out.put_double("start_factor", start_factor_);
  out.put_int("decay_steps", decay_steps_);
  out.put_double("eta_min", eta_min_);
}

std::function<void()> LinearWarmup::read_settings(const MetadataReader& in) {
  const int64_t warmup_steps = in.get_int("warmup_steps");
  const double start_factor = in.get_double("start_factor");
  const int64_t decay_steps = in.get_int("decay_steps");
  const double eta_min = in.get_double("eta_min");
  check_warmup(in.context() + ": ", warmup_steps, start_factor, decay_steps, eta_min);
  return [this, warmup_steps, start_factor, decay_steps, eta_min] {
    warmup_steps_ = warmup_steps;
    start_factor_ = start_factor;
    decay_steps_ = decay_steps;
    eta_min_ = eta_min;
  };
}

}  // namespace mg::nn
