// Walking normalised paths (path_normalize.hpp) with lookups: what every path convenience of
// Client starts with.
#pragma once

#include <span>
#include <string_view>
#include <system_error>

#include "virtiofs/client.hpp"

namespace virtiofs::client {

// Looks `names` up from the root; ".." goes back to the directory the walk came from (the
// root stays the root) and must leave a directory (ENOTDIR). `out` holds one lookup reference
// (forget it; for the root, forget is a no-op) and its attributes.
std::error_code walk(Client& fs, std::span<const std::string_view> names, Entry& out);

// Where a call that creates, removes or renames an entry acts: the directory holding the
// path's last name (one lookup reference to forget), and the name, viewing the path.
struct ParentAndName {
  Entry parent;
  std::string_view name;
  bool directory = false;  // the path ended in '/': the entry is, or is to be, a directory
};
// `if_root` is the error for a path naming the root (EEXIST when creating, EBUSY otherwise); a
// path ending in "." or ".." is EINVAL.
std::error_code split_parent(Client& fs, std::string_view path, std::errc if_root,
                             ParentAndName& out);

}  // namespace virtiofs::client
