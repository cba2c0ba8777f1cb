// Catching the std::system_error a setup call must throw, to check its code and message.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <system_error>

namespace virtiofs::test {

// Runs `f`, which must throw std::system_error; returns it (a default one when nothing threw).
template <class F>
std::system_error refusal(F&& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    return e;
  }
  ADD_FAILURE() << "no error thrown";
  return std::system_error(std::error_code());
}

inline bool mentions(const std::system_error& e, const std::string& text) {
  return std::string(e.what()).find(text) != std::string::npos;
}

}  // namespace virtiofs::test
