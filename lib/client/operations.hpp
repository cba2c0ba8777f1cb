// Every FUSE operation the Client offers, described once: its arguments, how they are checked,
// the request they build and how the reply becomes the result. Client's synchronous and
// asynchronous calls (client_ops.cpp) are both derived from these, so the two forms cannot
// drift apart.
//
// An operation is a struct with
//   using Result = ...;                      what the call produces (std::monostate: nothing)
//   std::error_code check() const;           arguments refused before anything is sent
//   fuse::Frame frame(const Negotiated&);    the request (names and buffers referenced)
//   std::error_code parse(const fuse::Reply&, Result&);
//   void names(F)                            each string_view the frame references, so an
//                                            asynchronous call can copy them and re-point them
//   bool abandonable() const                 false: a stop waits for the device's answer
// and may own scratch room its reply lands in (readlink, readdir). Names, attributes and
// extended attributes are here; files, locks and directories in file_operations.hpp.
#pragma once

#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include "fuse/ops.hpp"
#include "virtiofs/types.hpp"

namespace virtiofs::client::op {

inline std::error_code einval() { return std::make_error_code(std::errc::invalid_argument); }
inline std::error_code check_xattr_name(std::string_view name) {
  return name.empty() || name.size() > fuse::kMaxName || name.find('\0') != name.npos ? einval()
                                                                                       : std::error_code{};
}
inline std::error_code count(const fuse::Reply& r, fuse::Count kind, size_t& out) {
  uint64_t n = 0;
  auto ec = fuse::parse_count(r, kind, n);
  out = static_cast<size_t>(n);
  return ec;
}

// Defaults: no check, no names, no result, may be given up once sent (fs::Call::abandonable).
struct Base {
  std::error_code check() const { return {}; }
  bool abandonable() const { return true; }
  template <class F>
  void names(F&&) {}
};
struct NoResult : Base {
  using Result = std::monostate;
  static std::error_code parse(const fuse::Reply&, std::monostate&) { return {}; }
};
template <class T>
struct ValueResult : Base {
  using Result = T;
  static std::error_code parse(const fuse::Reply& r, T& out) { return fuse::parse(r, out); }
};

// ---- names ----

struct Lookup : ValueResult<Entry> {
  Inode parent;
  std::string_view name;
  Lookup(Inode p, std::string_view n) : parent(p), name(n) {}
  std::error_code check() const { return fuse::check_name(name); }
  fuse::Frame frame(const Negotiated&) const { return fuse::make_lookup(parent, name); }
  template <class F>
  void names(F&& f) { f(name); }
};

struct Mknod : ValueResult<Entry> {
  Inode parent;
  std::string_view name;
  uint32_t mode, rdev;
  Mknod(Inode p, std::string_view n, uint32_t m, uint32_t r) : parent(p), name(n), mode(m), rdev(r) {}
  std::error_code check() const { return fuse::check_name(name); }
  fuse::Frame frame(const Negotiated&) const { return fuse::make_mknod(parent, name, mode, rdev, 0); }
  template <class F>
  void names(F&& f) { f(name); }
};

struct Mkdir : ValueResult<Entry> {
  Inode parent;
  std::string_view name;
  uint32_t mode;
  Mkdir(Inode p, std::string_view n, uint32_t m) : parent(p), name(n), mode(m) {}
  std::error_code check() const { return fuse::check_name(name); }
  fuse::Frame frame(const Negotiated&) const { return fuse::make_mkdir(parent, name, mode, 0); }
  template <class F>
  void names(F&& f) { f(name); }
};

struct Symlink : ValueResult<Entry> {
  Inode parent;
  std::string_view name, target;
  Symlink(Inode p, std::string_view n, std::string_view t) : parent(p), name(n), target(t) {}
  std::error_code check() const {
    if (target.empty() || target.size() >= fuse::kMaxPath || target.find('\0') != target.npos)
      return einval();
    return fuse::check_name(name);
  }
  fuse::Frame frame(const Negotiated&) const { return fuse::make_symlink(parent, name, target); }
  template <class F>
  void names(F&& f) { f(name), f(target); }
};

struct Link : ValueResult<Entry> {
  Inode inode, newparent;
  std::string_view newname;
  Link(Inode i, Inode p, std::string_view n) : inode(i), newparent(p), newname(n) {}
  std::error_code check() const { return fuse::check_name(newname); }
  fuse::Frame frame(const Negotiated&) const { return fuse::make_link(inode, newparent, newname); }
  template <class F>
  void names(F&& f) { f(newname); }
};

struct Unlink : NoResult {
  Inode parent;
  std::string_view name;
  Unlink(Inode p, std::string_view n) : parent(p), name(n) {}
  std::error_code check() const { return fuse::check_name(name); }
  fuse::Frame frame(const Negotiated&) const { return fuse::make_unlink(parent, name); }
  template <class F>
  void names(F&& f) { f(name); }
};

struct Rmdir : Unlink {
  using Unlink::Unlink;
  fuse::Frame frame(const Negotiated&) const { return fuse::make_rmdir(parent, name); }
};

struct Rename : NoResult {
  Inode olddir;
  std::string_view oldname;
  Inode newdir;
  std::string_view newname;
  uint32_t flags;
  Rename(Inode od, std::string_view on, Inode nd, std::string_view nn, uint32_t f)
      : olddir(od), oldname(on), newdir(nd), newname(nn), flags(f) {}
  std::error_code check() const {
    if (auto ec = fuse::check_name(oldname)) return ec;
    return fuse::check_name(newname);
  }
  fuse::Frame frame(const Negotiated&) const {
    return fuse::make_rename(olddir, oldname, newdir, newname, flags);
  }
  template <class F>
  void names(F&& f) { f(oldname), f(newname); }
};

// ---- attributes ----

struct Getattr : ValueResult<Attr> {
  Inode inode;
  explicit Getattr(Inode i) : inode(i) {}
  fuse::Frame frame(const Negotiated&) const { return fuse::make_getattr(inode, nullptr); }
};

struct Setattr : ValueResult<Attr> {
  Inode inode;
  SetAttr attr;
  Setattr(Inode i, const SetAttr& a) : inode(i), attr(a) {}
  fuse::Frame frame(const Negotiated&) const { return fuse::make_setattr(inode, attr); }
};

struct Readlink : Base {
  using Result = std::string;
  Inode inode;
  std::string room;  // the reply lands here
  explicit Readlink(Inode i) : inode(i) {}
  fuse::Frame frame(const Negotiated&) {
    room.resize(fuse::kMaxPath);
    return fuse::make_readlink(inode, std::as_writable_bytes(std::span(room)));
  }
  std::error_code parse(const fuse::Reply& r, std::string& out) const {
    size_t n = 0;
    if (auto ec = count(r, fuse::Count::kData, n)) return ec;
    out.assign(room, 0, n);
    return {};
  }
};

struct Access : NoResult {
  Inode inode;
  uint32_t mask;
  Access(Inode i, uint32_t m) : inode(i), mask(m) {}
  fuse::Frame frame(const Negotiated&) const { return fuse::make_access(inode, mask); }
};

struct Statfs : ValueResult<StatFs> {
  Inode inode;
  explicit Statfs(Inode i) : inode(i) {}
  fuse::Frame frame(const Negotiated&) const { return fuse::make_statfs(inode); }
};

// ---- extended attributes ----

struct Setxattr : NoResult {
  Inode inode;
  std::string_view name;
  std::span<const std::byte> value;
  uint32_t flags;
  Setxattr(Inode i, std::string_view n, std::span<const std::byte> v, uint32_t f)
      : inode(i), name(n), value(v), flags(f) {}
  std::error_code check() const { return check_xattr_name(name); }
  fuse::Frame frame(const Negotiated&) const { return fuse::make_setxattr(inode, name, value, flags); }
  template <class F>
  void names(F&& f) { f(name); }
};

// With an empty buffer the result is the value's size; otherwise the bytes copied.
struct Getxattr : Base {
  using Result = size_t;
  Inode inode;
  std::string_view name;
  std::span<std::byte> value;
  Getxattr(Inode i, std::string_view n, std::span<std::byte> v) : inode(i), name(n), value(v) {}
  std::error_code check() const { return check_xattr_name(name); }
  fuse::Frame frame(const Negotiated&) const { return fuse::make_getxattr(inode, name, value); }
  static std::error_code parse(const fuse::Reply& r, size_t& out) {
    return count(r, fuse::Count::kXattrSize, out);
  }
  template <class F>
  void names(F&& f) { f(name); }
};

struct Listxattr : Base {
  using Result = size_t;
  Inode inode;
  std::span<std::byte> list;
  Listxattr(Inode i, std::span<std::byte> l) : inode(i), list(l) {}
  fuse::Frame frame(const Negotiated&) const { return fuse::make_listxattr(inode, list); }
  static std::error_code parse(const fuse::Reply& r, size_t& out) {
    return count(r, fuse::Count::kXattrSize, out);
  }
};

struct Removexattr : NoResult {
  Inode inode;
  std::string_view name;
  Removexattr(Inode i, std::string_view n) : inode(i), name(n) {}
  std::error_code check() const { return check_xattr_name(name); }
  fuse::Frame frame(const Negotiated&) const { return fuse::make_removexattr(inode, name); }
  template <class F>
  void names(F&& f) { f(name); }
};

}  // namespace virtiofs::client::op
