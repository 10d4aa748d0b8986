#pragma once
// CHECK_MG_ERROR(expr, "part", ...): expr must throw mg::Error (not another exception) whose
// message contains every part.
#include <doctest/doctest.h>

#include <exception>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>

#include "../tensor/error.h"

namespace mg::testing {

inline void check_error(const char* expr, const std::function<void()>& fn,
                        std::initializer_list<std::string_view> parts) {
  INFO("expression: " << std::string(expr));
  try {
    fn();
  } catch (const Error& e) {
    const std::string message = e.what();
    INFO("message: " << message);
    for (std::string_view part : parts)
      CHECK_MESSAGE(message.find(part) != std::string::npos, "message lacks \"" << std::string(part) << "\"");
    return;
  } catch (const std::exception& e) {
    FAIL_CHECK("threw a std::exception that is not mg::Error: " << e.what());
    return;
  } catch (...) {
    FAIL_CHECK("threw something that is not a std::exception");
    return;
  }
  FAIL_CHECK("did not throw");
}

}  // namespace mg::testing

#define CHECK_MG_ERROR(expr, ...) ::mg::testing::check_error(#expr, [&] { (void)(expr); }, {__VA_ARGS__})
