#pragma once
// mg::Error: every bad input becomes one of these, with a message naming the op,
// the shapes, dtypes and devices involved.
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace mg {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
template <typename... Parts>
std::string concat_message(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}
}  // namespace detail

// MG_CHECK(cond, "matmul: shapes ", a, " and ", b, " do not match") throws mg::Error.
#define MG_CHECK(cond, ...)                                            \
  do {                                                                 \
    if (!(cond)) throw ::mg::Error(::mg::detail::concat_message(__VA_ARGS__)); \
  } while (0)

#define MG_FAIL(...) throw ::mg::Error(::mg::detail::concat_message(__VA_ARGS__))

}  // namespace mg
