// Setup fails with std::system_error: the errno and a message naming the cause (and the fix).
#pragma once

#include <string>
#include <system_error>

namespace virtiofs {

[[noreturn]] inline void fail(int err, const std::string& what) {
  throw std::system_error(err, std::system_category(), what);
}

}  // namespace virtiofs
