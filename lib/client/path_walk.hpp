// Walking normalised paths (path_normalize.hpp) with lookups, through the path cache
// (path_cache.hpp): what every path convenience of Client starts with.
#pragma once

#include <sys/stat.h>

#include <span>
#include <string_view>
#include <system_error>
#include <vector>

#include "virtiofs/client.hpp"

namespace virtiofs::client {

// A node a walk reached: the root, pinned in the path cache (the reference is the cache's), or
// holding a lookup reference of its own (the cache did not take it). PathWalk lets go of it.
struct Held {
  enum class Kind { kRoot, kPinned, kOwned };
  Kind kind = Kind::kRoot;
  Inode parent = 0;       // where it was looked up (0: the root)
  std::string_view name;  // viewing the path
  Inode inode = kRootInode;
  uint64_t generation = 0;
  uint32_t type = S_IFDIR;  // S_IFMT bits
  Attr attr;
  bool attr_known = false;  // attr is fresh (the reply or the cache)
  bool is_directory() const { return type == S_IFDIR; }
};

// The directories walked, each held until the walk is destroyed: ".." returns to the one
// before (the root stays the root) and must leave a directory (ENOTDIR). A name under a
// non-directory is ENOTDIR. Not thread-safe (one per call); the cache it uses is.
class PathWalk {
 public:
  explicit PathWalk(Client& fs);
  ~PathWalk();
  PathWalk(const PathWalk&) = delete;
  PathWalk& operator=(const PathWalk&) = delete;

  std::error_code walk(std::span<const std::string_view> names);
  // One more name under last() (a cached node, else a LOOKUP the cache may keep).
  std::error_code step(std::string_view name);
  const Held& last() const;
  // last()'s attributes: the cache's or the reply's when fresh, else GETATTR.
  std::error_code attributes(Attr& out);
  // last() as an Entry with a lookup reference of the caller's own (a pinned node is looked up
  // again: the cache keeps its own); the walk lets go of it.
  std::error_code take_entry(Entry& out);
  // Hands last() to the caller, pinned or with its own reference, as it was held (a File keeps
  // it: let it go with let_go); the root holds nothing.
  Held take_last();
  static void let_go(Client& fs, const Held& h);
  // After this client created parent/name (mkdir, symlink, link, sent in cache epoch `sent`):
  // the cache takes `e`'s reference if nothing changed meanwhile, else it is forgotten.
  static void keep_created(Client& fs, Inode parent, std::string_view name, const Entry& e,
                           uint64_t sent);
  // The same for a node the caller keeps open (CREATE): pinned in the cache when it takes the
  // reference, else held with it.
  static Held keep_opened(Client& fs, Inode parent, std::string_view name, const Entry& e,
                          uint64_t sent);
  static uint64_t epoch(Client& fs);

 private:
  void pop();
  Client& fs_;
  Client::Impl& impl_;
  std::vector<Held> chain_;
  Held root_;
  bool checked_ = false;  // the session's failure, before the first cached answer
};

// Where a call that creates, removes or renames an entry acts: the directory holding the
// path's last name (walk.last()), and the name, viewing the path.
struct ParentAndName {
  std::string_view name;
  bool directory = false;  // the path ended in '/': the entry is, or is to be, a directory
};
// `if_root` is the error for a path naming the root (EEXIST when creating, EBUSY otherwise); a
// path ending in "." or ".." is EINVAL.
std::error_code split_parent(PathWalk& walk, std::string_view path, std::errc if_root,
                             ParentAndName& out);

}  // namespace virtiofs::client
