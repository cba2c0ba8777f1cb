// Splitting a share path into the names a walk looks up (the rules are those of the "paths"
// section of include/virtiofs/client.hpp). Pure: no device, no allocation beyond the vector.
#pragma once

#include <string_view>
#include <system_error>
#include <vector>

namespace virtiofs::client {

inline constexpr size_t kNameMax = 255;   // bytes of one name (NAME_MAX)
inline constexpr size_t kPathMax = 4096;  // bytes of a path with its NUL (PATH_MAX)

struct PathParts {
  // Names to look up from the root, in order, viewing the path: never "" or "."; ".." is kept
  // for the walk, which knows where it came from (resolving it here would be wrong after a
  // symlink).
  std::vector<std::string_view> names;
  // Ends in '/', "/." or "/..", or names the root: must be a directory.
  bool directory = false;
  // Ends in a name (perhaps followed by '/'): names an entry that can be created or removed.
  bool ends_in_name = false;
};

// EINVAL for a NUL byte, ENAMETOOLONG for a name over kNameMax bytes or a path of kPathMax
// bytes or more; `out` is then empty.
std::error_code normalize_path(std::string_view path, PathParts& out);

}  // namespace virtiofs::client
