#include "optimizer.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <system_error>
#include <utility>

#include "../autograd/grad_mode.h"
#include "../autograd/ops.h"

namespace mg::nn {

// ---------------------------------------------------------------------------------------------
// ParamList
// ---------------------------------------------------------------------------------------------

ParamList::ParamList(std::vector<Tensor> tensors) : tensors(std::move(tensors)) {}
ParamList::ParamList(std::initializer_list<Tensor> tensors) : tensors(tensors) {}
ParamList::ParamList(const TensorDict& named) {
  tensors.reserve(named.size());
  names.reserve(named.size());
  for (const auto& [name, t] : named) {
    names.push_back(name);
    tensors.push_back(t);
  }
}

// ---------------------------------------------------------------------------------------------
// Metadata as text
// ---------------------------------------------------------------------------------------------

MetadataWriter::MetadataWriter(std::map<std::string, std::string>& out, std::string prefix)
    : out_(&out), prefix_(std::move(prefix)) {}

void MetadataWriter::put_double(std::string_view key, double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  put_text(key, std::string(buffer, result.ptr));
}

void MetadataWriter::put_int(std::string_view key, int64_t value) { put_text(key, std::to_string(value)); }
void MetadataWriter::put_bool(std::string_view key, bool value) { put_text(key, value ? "true" : "false"); }
void MetadataWriter::put_text(std::string_view key, std::string value) {
  (*out_)[prefix_ + std::string(key)] = std::move(value);
}
MetadataWriter MetadataWriter::sub(std::string_view prefix) const {
  return MetadataWriter(*out_, prefix_ + std::string(prefix));
}

MetadataReader::MetadataReader(const std::map<std::string, std::string>& in, std::string prefix, std::string context)
    : in_(&in), root_(prefix), prefix_(std::move(prefix)), context_(std::move(context)),
      used_(std::make_shared<std::set<std::string>>()) {}

bool MetadataReader::has(std::string_view key) const { return in_->count(full_key(key)) != 0; }

const std::string& MetadataReader::text(std::string_view key) const {
  const std::string full = full_key(key);
  const auto it = in_->find(full);
  MG_CHECK(it != in_->end(), context_, ": the state lacks the entry '", full, "'");
  used_->insert(full);
  return it->second;
}

double MetadataReader::get_double(std::string_view key) const {
  const std::string& s = text(key);
  double value = 0;
  const auto result = std::from_chars(s.data(), s.data() + s.size(), value);
  MG_CHECK(result.ec == std::errc() && result.ptr == s.data() + s.size() && !s.empty(), context_, ": entry '",
           full_key(key), "' is '", s, "', not a number");
  return value;
}

int64_t MetadataReader::get_int(std::string_view key) const {
  const std::string& s = text(key);
  int64_t value = 0;
  const auto result = std::from_chars(s.data(), s.data() + s.size(), value);
  MG_CHECK(result.ec == std::errc() && result.ptr == s.data() + s.size() && !s.empty(), context_, ": entry '",
           full_key(key), "' is '", s, "', not an integer");
  return value;
}

bool MetadataReader::get_bool(std::string_view key) const {
  const std::string& s = text(key);
  MG_CHECK(s == "true" || s == "false", context_, ": entry '", full_key(key), "' is '", s,
           "', not true or false");
  return s == "true";
}

MetadataReader MetadataReader::sub(std::string_view prefix) const {
  MetadataReader out = *this;
  out.prefix_ += std::string(prefix);
  return out;
}

void MetadataReader::mark_used(std::string_view key) const { used_->insert(full_key(key)); }

void MetadataReader::check_all_used() const {
  for (auto it = in_->lower_bound(root_); it != in_->end() && it->first.starts_with(root_); ++it) {
    MG_CHECK(used_->count(it->first) != 0, context_, ": unexpected entry '", it->first, "' = '", it->second,
             "' (is this the state of another optimizer or scheduler?)");
  }
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

namespace detail {

void check_lr(const std::string& where, double lr) {
  MG_CHECK(std::isfinite(lr) && lr >= 0, where, "invalid learning rate ", lr, " (must be finite and >= 0)");
}

void check_non_negative(const std::string& where, const char* name, double value) {
  MG_CHECK(std::isfinite(value) && value >= 0, where, "invalid ", name, " ", value, " (must be finite and >= 0)");
}

void check_unit_interval(const std::string& where, const char* name, double value) {
  MG_CHECK(value >= 0 && value < 1, where, "invalid ", name, " ", value, " (must be in [0, 1))");
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Optimizer
// ---------------------------------------------------------------------------------------------

namespace {

std::string label(const ParamList& group, std::size_t g, std::size_t j, std::size_t index) {
  std::string out = "#" + std::to_string(index);
  if (!group.names.empty()) out += " '" + group.names[j] + "'";
  return out + " (group " + std::to_string(g) + ")";
}

// "state.<i>.<name>" -> (i, name); false when the key has another form.
bool parse_state_key(std::string_view key, std::size_t* index, std::string* name) {
  constexpr std::string_view kHead = "state.";
  if (!key.starts_with(kHead)) return false;
  key.remove_prefix(kHead.size());
  const std::size_t dot = key.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == key.size()) return false;
  const auto result = std::from_chars(key.data(), key.data() + dot, *index);
  if (result.ec != std::errc() || result.ptr != key.data() + dot) return false;
  *name = std::string(key.substr(dot + 1));
  return true;
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

Optimizer::Optimizer(std::string type, std::vector<ParamList> groups) : type_(std::move(type)), groups_(std::move(groups)) {
  std::set<const TensorImpl*> seen;
  std::size_t index = 0;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const ParamList& group = groups_[g];
    MG_CHECK(group.names.empty() || group.names.size() == group.tensors.size(), where(), "group ", g, " has ",
             group.tensors.size(), " parameters but ", group.names.size(), " names");
    group_start_.push_back(index);
    for (std::size_t j = 0; j < group.tensors.size(); ++j, ++index) {
      const Tensor& t = group.tensors[j];
      const std::string what = "parameter " + label(group, g, j, index);
      MG_CHECK(t.defined(), where(), what, " is an undefined tensor");
      MG_CHECK(is_floating(t.dtype()), where(), what, " is ", describe(t), "; only floating tensors can be optimized");
      MG_CHECK(t.is_leaf(), where(), what, " is not a leaf (it was computed from other tensors); optimize the ",
               "leaves it came from, or a detach()ed copy");
      MG_CHECK(seen.insert(t.impl_ptr().get()).second, where(), what, " appears more than once");
    }
  }
  MG_CHECK(index > 0, where(), "got an empty parameter list");
  state_.resize(index);
}

const std::vector<Tensor>& Optimizer::params(std::size_t group) const {
  MG_CHECK(group < groups_.size(), where(), "no parameter group ", group, " (there are ", groups_.size(), ")");
  return groups_[group].tensors;
}

const std::vector<std::string>& Optimizer::param_names(std::size_t group) const {
  MG_CHECK(group < groups_.size(), where(), "no parameter group ", group, " (there are ", groups_.size(), ")");
  return groups_[group].names;
}

void Optimizer::set_lr(double lr, std::size_t group) {
  MG_CHECK(group < groups_.size(), where(), "no parameter group ", group, " (there are ", groups_.size(), ")");
  detail::check_lr(where(), lr);
  set_group_lr(group, lr);
}

void Optimizer::set_lr(double lr) {
  detail::check_lr(where(), lr);
  for (std::size_t g = 0; g < groups_.size(); ++g) set_group_lr(g, lr);
}

void Optimizer::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (const ParamList& group : groups_) {
    for (const Tensor& p : group.tensors) {
      const Tensor grad = p.grad();
      if (!grad.defined()) continue;
      if (set_to_none) {
        p.set_grad(Tensor());
      } else {
        // Detached first: a gradient built with create_graph must not keep its history.
        Tensor zeroed = grad.detach();
        zeroed.zero_();
        p.set_grad(zeroed);
      }
    }
  }
}

void Optimizer::for_each_param_with_grad(
    const std::function<void(std::size_t, std::size_t, Tensor&, const Tensor&)>& fn) {
  NoGradGuard no_grad;
  std::size_t index = 0;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    for (Tensor& p : groups_[g].tensors) {
      const Tensor grad = p.grad();
      if (grad.defined()) fn(g, index, p, grad.detach());
      ++index;
    }
  }
}

OptimizerState Optimizer::state_dict(const std::string& prefix) const {
  OptimizerState out;
  MetadataWriter meta(out.metadata, prefix);
  meta.put_text("type", type_);
  meta.put_int("param_groups", static_cast<int64_t>(groups_.size()));
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    MetadataWriter group = meta.sub("param_groups." + std::to_string(g) + ".");
    group.put_int("num_params", static_cast<int64_t>(groups_[g].tensors.size()));
    write_hyperparameters(g, group);
    for (std::size_t j = 0; j < groups_[g].names.size(); ++j)
      meta.put_text("param_names." + std::to_string(group_start_[g] + j), groups_[g].names[j]);
  }
  for (std::size_t i = 0; i < state_.size(); ++i) {
    const std::string head = "state." + std::to_string(i) + ".";
    if (counts_steps() && state_[i].step > 0) meta.put_int(head + "step", state_[i].step);
    for (const auto& [name, t] : state_[i].buffers) out.tensors.insert(prefix + head + name, t);
  }
  return out;
}

void Optimizer::load_state_dict(const TensorDict& tensors, const std::map<std::string, std::string>& metadata,
                                const std::string& prefix) {
  const std::string context = type_ + ".load_state_dict";
  const MetadataReader in(metadata, prefix, context);

  const std::string& saved_type = in.text("type");
  MG_CHECK(saved_type == type_, context, ": the state is that of a ", saved_type, " optimizer, not ", type_);
  const int64_t saved_groups = in.get_int("param_groups");
  MG_CHECK(saved_groups == static_cast<int64_t>(groups_.size()), context, ": the state has ", saved_groups,
           " parameter groups but this optimizer has ", groups_.size(), "; it belongs to another parameter set");
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const int64_t n = in.get_int("param_groups." + std::to_string(g) + ".num_params");
    MG_CHECK(n == static_cast<int64_t>(groups_[g].tensors.size()), context, ": group ", g, " has ", n,
             " parameters in the state but ", groups_[g].tensors.size(),
             " in this optimizer; it belongs to another parameter set");
  }
  const std::function<void()> commit_hyperparameters = read_hyperparameters(in);

  // Which parameter each flat index is, for names and shapes.
  std::vector<std::pair<std::size_t, std::size_t>> where_is(state_.size());
  for (std::size_t g = 0; g < groups_.size(); ++g)
    for (std::size_t j = 0; j < groups_[g].tensors.size(); ++j) where_is[group_start_[g] + j] = {g, j};
  auto param_label = [&](std::size_t i) {
    const auto [g, j] = where_is[i];
    return label(groups_[g], g, j, i);
  };

  for (std::size_t i = 0; i < state_.size(); ++i) {
    const std::string key = "param_names." + std::to_string(i);
    if (!in.has(key)) continue;
    const std::string& saved = in.text(key);
    const auto [g, j] = where_is[i];
    if (groups_[g].names.empty()) continue;
    MG_CHECK(saved == groups_[g].names[j], context, ": parameter #", i, " is '", groups_[g].names[j],
             "' here but '", saved, "' in the state; it belongs to another parameter set");
  }

  std::vector<ParamState> staged(state_.size());
  const std::vector<std::string> known = state_names();
  {
    NoGradGuard no_grad;
    for (const auto& [key, t] : tensors) {
      if (!key.starts_with(prefix)) continue;
      std::size_t i = 0;
      std::string name;
      MG_CHECK(parse_state_key(std::string_view(key).substr(prefix.size()), &i, &name), context,
               ": unexpected tensor '", key, "' (expected '", prefix, "state.<index>.<name>')");
      MG_CHECK(i < state_.size(), context, ": tensor '", key, "' is for parameter #", i, " but this optimizer has ",
               state_.size(), " parameters; it belongs to another parameter set");
      MG_CHECK(std::find(known.begin(), known.end(), name) != known.end(), context, ": tensor '", key,
               "' holds '", name, "', which ", type_, " does not keep (it keeps: ", join(known), ")");
      const auto [g, j] = where_is[i];
      const Tensor& param = groups_[g].tensors[j];
      MG_CHECK(t.shape() == param.shape(), context, ": tensor '", key, "' has shape ", shape_str(t.shape()),
               " but parameter ", param_label(i), " has shape ", shape_str(param.shape()),
               "; it belongs to another parameter set");
      MG_CHECK(is_floating(t.dtype()), context, ": tensor '", key, "' is ", describe(t), ", not floating point");
      // A copy, so that the optimizer never shares storage with the caller's dict.
      staged[i].buffers.insert(name, t.detach().to(param.dtype()).to(param.device()).clone());
    }
  }

  const std::vector<std::string> required = required_state_names();
  for (std::size_t i = 0; i < state_.size(); ++i) {
    const std::string head = "state." + std::to_string(i) + ".";
    if (counts_steps() && in.has(head + "step")) {
      staged[i].step = in.get_int(head + "step");
      MG_CHECK(staged[i].step > 0, context, ": entry '", in.full_key(head + "step"), "' is ", staged[i].step,
               "; a step count in the state must be positive");
    }
    const bool has_state = staged[i].step > 0 || !staged[i].buffers.empty();
    if (!has_state) continue;
    MG_CHECK(!counts_steps() || staged[i].step > 0, context, ": parameter ", param_label(i),
             " has state tensors but no step count '", in.full_key(head + "step"), "'");
    for (const std::string& name : required) {
      MG_CHECK(staged[i].buffers.contains(name), context, ": parameter ", param_label(i), " has state but lacks '",
               prefix, head, name, "'");
    }
  }
  in.check_all_used();

  commit_hyperparameters();
  state_ = std::move(staged);
}

}  // namespace mg::nn
