#include "client/path_normalize.hpp"

namespace virtiofs::client {

std::error_code normalize_path(std::string_view path, PathParts& out) {
  out = PathParts{};
  if (path.size() >= kPathMax) return std::make_error_code(std::errc::filename_too_long);
  if (path.find('\0') != std::string_view::npos)
    return std::make_error_code(std::errc::invalid_argument);
  std::string_view last;  // the last non-empty component, "." included
  size_t pos = 0;
  while (pos < path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view c = path.substr(pos, end - pos);
    pos = end + 1;
    if (c.empty()) continue;
    if (c.size() > kNameMax) {
      out.names.clear();
      return std::make_error_code(std::errc::filename_too_long);
    }
    last = c;
    if (c != ".") out.names.push_back(c);
  }
  out.ends_in_name = !last.empty() && last != "." && last != "..";
  out.directory = !out.ends_in_name || path.back() == '/';
  return {};
}

}  // namespace virtiofs::client
