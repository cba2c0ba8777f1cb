// The operations on open files, locks and directories (see operations.hpp for what an
// operation is).
#pragma once

#include <fcntl.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "client/operations.hpp"
#include "fuse/dirent.hpp"
#include "fuse/ops.hpp"
#include "virtiofs/types.hpp"

namespace virtiofs::client::op {

// ---- files ----

struct Open : ValueResult<OpenFile> {
  Inode inode;
  uint32_t flags;
  Open(Inode i, uint32_t f) : inode(i), flags(f) {}
  fuse::Frame frame(const Negotiated&) const { return fuse::make_open(inode, flags, false); }
};

struct Create : ValueResult<Created> {
  Inode parent;
  std::string_view name;
  uint32_t flags, mode;
  Create(Inode p, std::string_view n, uint32_t f, uint32_t m) : parent(p), name(n), flags(f), mode(m) {}
  std::error_code check() const { return fuse::check_name(name); }
  fuse::Frame frame(const Negotiated&) const {
    return fuse::make_create(parent, name, flags, mode, 0);
  }
  template <class F>
  void names(F&& f) { f(name); }
};

// At most Negotiated::max_read bytes per call; the result is the count.
struct Read : Base {
  using Result = size_t;
  Inode inode;
  uint64_t fh, offset;
  std::span<std::byte> buf;
  Read(Inode i, uint64_t h, uint64_t o, std::span<std::byte> b) : inode(i), fh(h), offset(o), buf(b) {}
  fuse::Frame frame(const Negotiated& n) const {
    return fuse::make_read(inode, fh, offset, buf.first(std::min<size_t>(buf.size(), n.max_read)),
                           false, false);
  }
  static std::error_code parse(const fuse::Reply& r, size_t& out) {
    return count(r, fuse::Count::kData, out);
  }
};

struct Write : Base {
  using Result = size_t;
  Inode inode;
  uint64_t fh, offset;
  std::span<const std::byte> data;
  Write(Inode i, uint64_t h, uint64_t o, std::span<const std::byte> d)
      : inode(i), fh(h), offset(o), data(d) {}
  fuse::Frame frame(const Negotiated& n) const {
    return fuse::make_write(inode, fh, offset, data.first(std::min<size_t>(data.size(), n.max_write)));
  }
  static std::error_code parse(const fuse::Reply& r, size_t& out) {
    return count(r, fuse::Count::kWritten, out);
  }
};

struct Release : NoResult {
  Inode inode;
  uint64_t fh;
  uint32_t flags;
  Release(Inode i, uint64_t h, uint32_t f) : inode(i), fh(h), flags(f) {}
  fuse::Frame frame(const Negotiated&) const { return fuse::make_release(inode, fh, flags, false); }
};

struct Fsync : NoResult {
  Inode inode;
  uint64_t fh;
  bool datasync;
  Fsync(Inode i, uint64_t h, bool d) : inode(i), fh(h), datasync(d) {}
  fuse::Frame frame(const Negotiated&) const { return fuse::make_fsync(inode, fh, datasync, false); }
};

struct Flush : NoResult {
  Inode inode;
  uint64_t fh, lock_owner;
  Flush(Inode i, uint64_t h, uint64_t o) : inode(i), fh(h), lock_owner(o) {}
  fuse::Frame frame(const Negotiated&) const { return fuse::make_flush(inode, fh, lock_owner); }
};

struct Fallocate : NoResult {
  Inode inode;
  uint64_t fh, offset, length;
  uint32_t mode;
  Fallocate(Inode i, uint64_t h, uint64_t o, uint64_t l, uint32_t m)
      : inode(i), fh(h), offset(o), length(l), mode(m) {}
  fuse::Frame frame(const Negotiated&) const {
    return fuse::make_fallocate(inode, fh, offset, length, mode);
  }
};

struct Lseek : Base {
  using Result = uint64_t;
  Inode inode;
  uint64_t fh, offset;
  uint32_t whence;
  Lseek(Inode i, uint64_t h, uint64_t o, uint32_t w) : inode(i), fh(h), offset(o), whence(w) {}
  fuse::Frame frame(const Negotiated&) const { return fuse::make_lseek(inode, fh, offset, whence); }
  static std::error_code parse(const fuse::Reply& r, uint64_t& out) {
    return fuse::parse_count(r, fuse::Count::kSeekOffset, out);
  }
};

struct CopyFileRange : Base {
  using Result = uint64_t;
  Inode in_inode;
  uint64_t in_fh, in_off;
  Inode out_inode;
  uint64_t out_fh, out_off, len;
  CopyFileRange(Inode ii, uint64_t ih, uint64_t io, Inode oi, uint64_t oh, uint64_t oo, uint64_t l)
      : in_inode(ii), in_fh(ih), in_off(io), out_inode(oi), out_fh(oh), out_off(oo), len(l) {}
  fuse::Frame frame(const Negotiated&) const {
    return fuse::make_copy_file_range(in_inode, in_fh, in_off, out_inode, out_fh, out_off, len);
  }
  static std::error_code parse(const fuse::Reply& r, uint64_t& out) {
    return fuse::parse_count(r, fuse::Count::kWritten, out);
  }
};

struct Getlk : ValueResult<Lock> {
  Inode inode;
  uint64_t fh, owner;
  Lock lock;
  Getlk(Inode i, uint64_t h, uint64_t o, const Lock& l) : inode(i), fh(h), owner(o), lock(l) {}
  fuse::Frame frame(const Negotiated&) const { return fuse::make_getlk(inode, fh, owner, lock); }
};

struct Setlk : NoResult {
  Inode inode;
  uint64_t fh, owner;
  Lock lock;
  bool wait;
  Setlk(Inode i, uint64_t h, uint64_t o, const Lock& l, bool w)
      : inode(i), fh(h), owner(o), lock(l), wait(w) {}
  // A waiting lock granted after the caller left would be held by nobody who knows it.
  bool abandonable() const { return !wait; }
  fuse::Frame frame(const Negotiated&) const { return fuse::make_setlk(inode, fh, owner, lock, wait); }
};

// ---- directories ----

struct Opendir : ValueResult<OpenFile> {
  Inode inode;
  explicit Opendir(Inode i) : inode(i) {}
  fuse::Frame frame(const Negotiated&) const {
    return fuse::make_open(inode, O_RDONLY | O_DIRECTORY, true);
  }
};

struct Releasedir : NoResult {
  Inode inode;
  uint64_t fh;
  Releasedir(Inode i, uint64_t h) : inode(i), fh(h) {}
  fuse::Frame frame(const Negotiated&) const { return fuse::make_release(inode, fh, 0, true); }
};

struct Fsyncdir : NoResult {
  Inode inode;
  uint64_t fh;
  bool datasync;
  Fsyncdir(Inode i, uint64_t h, bool d) : inode(i), fh(h), datasync(d) {}
  fuse::Frame frame(const Negotiated&) const { return fuse::make_fsync(inode, fh, datasync, true); }
};

// One buffer of entries from `offset`; an empty result is the end of the directory.
template <bool kPlus, class Item>
struct ReaddirOf : Base {
  using Result = std::vector<Item>;
  static constexpr size_t kRoom = 64 * 1024;
  Inode inode;
  uint64_t fh, offset;
  std::vector<std::byte> room;  // the reply lands here
  ReaddirOf(Inode i, uint64_t h, uint64_t o) : inode(i), fh(h), offset(o) {}
  // READDIRPLUS entries each carry a reference, in data a dropped reply does not keep.
  bool abandonable() const { return !kPlus; }
  fuse::Frame frame(const Negotiated&) {
    room.resize(kRoom);
    return fuse::make_read(inode, fh, offset, room, true, kPlus);
  }
  std::error_code parse(const fuse::Reply& r, Result& out) const {
    size_t n = 0;
    if (auto ec = count(r, fuse::Count::kData, n)) return ec;
    out.clear();
    return fuse::parse_dirents(std::span(room).first(n), kPlus, [&](const fuse::DirentView& d) {
      DirEntry e{d.ino, d.offset, d.type, std::string(d.name)};
      if constexpr (kPlus)
        out.emplace_back(std::move(e), *d.entry);
      else
        out.push_back(std::move(e));
      return true;
    });
  }
};
using Readdir = ReaddirOf<false, DirEntry>;
using Readdirplus = ReaddirOf<true, std::pair<DirEntry, Entry>>;

}  // namespace virtiofs::client::op
