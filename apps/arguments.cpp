#include "arguments.h"

#include <algorithm>
#include <sstream>

#include "../tensor/error.h"

namespace mg::app {

namespace {

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

Arguments::Arguments(const std::vector<std::string>& args, const std::vector<FlagSpec>& specs, std::string command)
    : command_(std::move(command)) {
  auto find = [&specs](const std::string& name) -> const FlagSpec* {
    for (const auto& s : specs)
      if (s.name == name) return &s;
    return nullptr;
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    MG_CHECK(arg.size() > 2 && arg.rfind("--", 0) == 0, command_, ": unexpected argument '", arg,
             "' (flags look like --name value; see 'metagrad ", command_, " --help')");
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (const auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const FlagSpec* spec = find(name);
    if (spec == nullptr) {
      std::string closest;
      std::size_t best = 3;  // suggest only near misses
      for (const auto& s : specs) {
        const std::size_t d = edit_distance(name, s.name);
        if (d < best) best = d, closest = s.name;
      }
      MG_FAIL(command_, ": unknown flag --", name, closest.empty() ? "" : " (did you mean --" + closest + "?)",
              "; see 'metagrad ", command_, " --help'");
    }
    MG_CHECK(!values_.contains(name), command_, ": --", name, " given twice");
    if (spec->is_switch) {
      MG_CHECK(!value.has_value(), command_, ": --", name, " takes no value");
      values_[name] = "";
    } else {
      if (!value) {
        MG_CHECK(i + 1 < args.size(), command_, ": --", name, " needs a value (", spec->value_name, ")");
        value = args[++i];
      }
      MG_CHECK(!value->empty(), command_, ": --", name, " needs a non-empty value");
      values_[name] = *value;
    }
    order_.push_back(name);
  }
}

bool Arguments::has(const std::string& name) const { return values_.contains(name); }

std::optional<std::string> Arguments::text(const std::string& name) const {
  const auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Arguments::text(const std::string& name, const std::string& fallback) const {
  return text(name).value_or(fallback);
}

int64_t Arguments::integer(const std::string& name, int64_t fallback, int64_t min) const {
  const auto t = text(name);
  if (!t) return fallback;
  std::size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(*t, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  MG_CHECK(used == t->size(), command_, ": --", name, " expects an integer, got '", *t, "'");
  MG_CHECK(v >= min, command_, ": --", name, " must be at least ", min, ", got ", v);
  return v;
}

double Arguments::real(const std::string& name, double fallback) const {
  const auto t = text(name);
  if (!t) return fallback;
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(*t, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  MG_CHECK(used == t->size(), command_, ": --", name, " expects a number, got '", *t, "'");
  return v;
}

std::vector<int64_t> Arguments::integer_list(const std::string& name, const std::vector<int64_t>& fallback) const {
  const auto t = text(name);
  if (!t) return fallback;
  std::vector<int64_t> out;
  for (const std::string& part : split_list(*t)) {
    std::size_t used = 0;
    int64_t v = -1;
    try {
      v = std::stoll(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    MG_CHECK(used == part.size() && !part.empty() && v >= 0, command_, ": --", name,
             " expects a comma-separated list of non-negative integers, got '", *t, "'");
    out.push_back(v);
  }
  return out;
}

std::string Arguments::given() const {
  std::string out;
  for (const auto& name : order_) {
    out += (out.empty() ? "--" : " --") + name;
    if (!values_.at(name).empty()) out += " " + values_.at(name);
  }
  return out;
}

std::string usage_lines(const std::vector<FlagSpec>& specs) {
  std::ostringstream out;
  for (const auto& s : specs) {
    std::string left = "  --" + s.name + (s.is_switch ? "" : " " + s.value_name);
    if (left.size() < 30)
      left.resize(30, ' ');
    else
      left += "  ";
    out << left << s.help << "\n";
  }
  return out.str();
}

std::vector<std::string> split_list(const std::string& text, char separator) {
  std::vector<std::string> out;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, separator)) out.push_back(part);
  return out;
}

}  // namespace mg::app
