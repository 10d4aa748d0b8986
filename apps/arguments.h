#pragma once
// Command-line flags of the form --name value, --name=value and bare --switch. Each command
// declares its flags; anything else is an error naming the flag (and the closest known one).
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mg::app {

struct FlagSpec {
  std::string name;  // without the dashes
  std::string help;
  bool is_switch = false;  // takes no value
  std::string value_name = "VALUE";
};

class Arguments {
 public:
  // args excludes the program and command names. Throws mg::Error on an unknown flag, a missing
  // value, a positional argument or a flag given twice.
  Arguments(const std::vector<std::string>& args, const std::vector<FlagSpec>& specs, std::string command);

  bool has(const std::string& name) const;
  bool flag(const std::string& name) const { return has(name); }
  std::optional<std::string> text(const std::string& name) const;
  std::string text(const std::string& name, const std::string& fallback) const;
  // Typed values; a malformed number is an error naming the flag.
  int64_t integer(const std::string& name, int64_t fallback, int64_t min = INT64_MIN) const;
  double real(const std::string& name, double fallback) const;
  std::vector<int64_t> integer_list(const std::string& name, const std::vector<int64_t>& fallback) const;
  // The flags as given, "--name value ..." (for the run summary).
  std::string given() const;

 private:
  std::string command_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> order_;
};

// "  --name VALUE   help" lines.
std::string usage_lines(const std::vector<FlagSpec>& specs);
std::vector<std::string> split_list(const std::string& text, char separator = ',');

}  // namespace mg::app
