// Path conveniences and File: compositions of inode operations. Every lookup reference taken on
// the way is given back with FORGET, so walking paths leaks nothing on the device.
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <utility>

#include "client/client_impl.hpp"
#include "client/path_normalize.hpp"
#include "client/path_walk.hpp"
#include "virtiofs/client.hpp"

namespace virtiofs {

namespace {

std::error_code not_a_directory() { return std::make_error_code(std::errc::not_a_directory); }

using client::Held;
using client::ParentAndName;
using client::PathWalk;
using client::split_parent;
constexpr std::errc kCreatingRoot = std::errc::file_exists;  // the root exists
constexpr std::errc kRemovingRoot = std::errc::device_or_resource_busy;  // the share's mount point

}  // namespace

// Attributes from the path cache while fresh, else GETATTR on the node the walk reached (or
// the LOOKUP's own, on a miss).
std::error_code Client::stat(std::string_view path, Attr& out) {
  client::PathParts parts;
  if (auto ec = client::normalize_path(path, parts)) return ec;
  PathWalk walk(*this);
  if (auto ec = walk.walk(parts.names)) return ec;
  if (parts.directory && !walk.last().is_directory()) return not_a_directory();
  return walk.attributes(out);
}

std::error_code Client::mkdir(std::string_view path, uint32_t mode) {
  PathWalk walk(*this);
  ParentAndName at;
  if (auto ec = split_parent(walk, path, kCreatingRoot, at)) return ec;
  const Inode parent = walk.last().inode;
  const uint64_t sent = PathWalk::epoch(*this);
  Entry e;
  auto ec = mkdir(parent, at.name, mode, e);
  if (!ec) PathWalk::keep_created(*this, parent, at.name, e, sent);
  return ec;
}

// The device resolves names of UNLINK, RMDIR and RENAME only among nodes the driver holds a
// reference to, as the kernel always does (virtiofsd answers EIO otherwise): the walk's step
// holds the victim (the path cache's reference, else a LOOKUP).
std::error_code Client::rmdir(std::string_view path) {
  PathWalk walk(*this);
  ParentAndName at;
  if (auto ec = split_parent(walk, path, kRemovingRoot, at)) return ec;
  const Inode parent = walk.last().inode;
  if (auto ec = walk.step(at.name)) return ec;
  return rmdir(parent, at.name);
}

std::error_code Client::unlink(std::string_view path) {
  PathWalk walk(*this);
  ParentAndName at;
  if (auto ec = split_parent(walk, path, kRemovingRoot, at)) return ec;
  const Inode parent = walk.last().inode;
  if (auto ec = walk.step(at.name)) return ec;
  // "f/" names a directory: a file there is ENOTDIR (a directory gets the device's EISDIR).
  if (at.directory && !walk.last().is_directory()) return not_a_directory();
  return unlink(parent, at.name);
}

std::error_code Client::rename(std::string_view from, std::string_view to) {
  PathWalk src_walk(*this), dst_walk(*this);
  ParentAndName src, dst;
  if (auto ec = split_parent(src_walk, from, kRemovingRoot, src)) return ec;
  if (auto ec = split_parent(dst_walk, to, kRemovingRoot, dst)) return ec;
  const Inode src_parent = src_walk.last().inode, dst_parent = dst_walk.last().inode;
  if (auto ec = src_walk.step(src.name)) return ec;
  if ((src.directory || dst.directory) && !src_walk.last().is_directory()) return not_a_directory();
  (void)dst_walk.step(dst.name);  // held if it exists (it is replaced)
  return rename(src_parent, src.name, dst_parent, dst.name, 0);
}

std::error_code Client::symlink(std::string_view target, std::string_view linkpath) {
  PathWalk walk(*this);
  ParentAndName at;
  if (auto ec = split_parent(walk, linkpath, kCreatingRoot, at)) return ec;
  if (at.directory) return not_a_directory();  // a symlink is no directory
  const Inode parent = walk.last().inode;
  const uint64_t sent = PathWalk::epoch(*this);
  Entry e;
  auto ec = symlink(parent, at.name, target, e);
  if (!ec) PathWalk::keep_created(*this, parent, at.name, e, sent);
  return ec;
}

std::error_code Client::link(std::string_view existing, std::string_view newpath) {
  client::PathParts parts;
  if (auto ec = client::normalize_path(existing, parts)) return ec;
  PathWalk target(*this);
  if (auto ec = target.walk(parts.names)) return ec;
  if (parts.directory && !target.last().is_directory()) return not_a_directory();
  PathWalk walk(*this);
  ParentAndName at;
  if (auto ec = split_parent(walk, newpath, kCreatingRoot, at)) return ec;
  if (at.directory) return not_a_directory();  // hard links to directories do not exist
  const Inode parent = walk.last().inode;
  const uint64_t sent = PathWalk::epoch(*this);
  Entry e;
  auto ec = link(target.last().inode, parent, at.name, e);
  if (!ec) PathWalk::keep_created(*this, parent, at.name, e, sent);
  return ec;
}

std::error_code Client::readlink(std::string_view path, std::string& target) {
  client::PathParts parts;
  if (auto ec = client::normalize_path(path, parts)) return ec;
  PathWalk walk(*this);
  if (auto ec = walk.walk(parts.names)) return ec;
  if (parts.directory && !walk.last().is_directory()) return not_a_directory();
  return readlink(walk.last().inode, target);
}

std::error_code Client::list_dir(std::string_view path, std::vector<DirEntry>& out) {
  out.clear();
  client::PathParts parts;
  if (auto ec = client::normalize_path(path, parts)) return ec;
  PathWalk walk(*this);
  if (auto ec = walk.walk(parts.names)) return ec;
  if (parts.directory && !walk.last().is_directory()) return not_a_directory();
  Entry e;
  e.inode = walk.last().inode;  // held by the walk
  OpenFile dir;
  if (auto ec = opendir(e.inode, dir)) return ec;
  std::vector<DirEntry> batch;
  uint64_t offset = 0;
  std::error_code ec;
  for (;;) {
    if ((ec = readdir(e.inode, dir.fh, offset, batch)) || batch.empty()) break;
    offset = batch.back().offset;
    for (auto& d : batch)
      if (d.name != "." && d.name != "..") out.push_back(std::move(d));
  }
  auto rec = releasedir(e.inode, dir.fh);
  return ec ? ec : rec;
}

// The File keeps the node as the walk held it: pinned in the path cache (no LOOKUP of its own
// for a cached name, as an open file keeps its dentry) or with a reference of its own.
std::error_code Client::open_file(std::string_view path, uint32_t flags, File& out, uint32_t mode) {
  out.close();
  PathWalk walk(*this);
  Held node;
  OpenFile of;
  if (flags & O_CREAT) {
    ParentAndName at;
    if (auto ec = split_parent(walk, path, kCreatingRoot, at)) return ec;
    // O_CREAT with a trailing '/': EISDIR, as open(2) gives, existing or not.
    if (at.directory) return std::make_error_code(std::errc::is_a_directory);
    const Inode parent = walk.last().inode;
    const std::string_view name = at.name;
    // Like the kernel: CREATE only for a name that does not exist, and always exclusive, since
    // virtiofsd 7.2 aborts on a non-exclusive CREATE of an existing file. Lost race: open it
    // (CREATE's EEXIST dropped any cached "does not exist", so the step asks the device).
    bool opened = false;
    for (int attempt = 0; attempt < 2 && !opened; ++attempt) {
      if (!(flags & O_EXCL)) {
        auto ec = walk.step(name);
        if (!ec) {
          node = walk.take_last();
          if ((ec = open(node.inode, flags & ~static_cast<uint32_t>(O_CREAT), of))) {
            PathWalk::let_go(*this, node);
            return ec;
          }
          opened = true;
          break;
        }
        if (ec != std::errc::no_such_file_or_directory) return ec;
      }
      const uint64_t sent = PathWalk::epoch(*this);
      Created c;
      auto ec = create(parent, name, flags | O_EXCL, mode, c);
      if (!ec) {
        node = PathWalk::keep_opened(*this, parent, name, c.entry, sent);
        of = c.file;
        opened = true;
      } else if (ec != std::errc::file_exists || (flags & O_EXCL)) {
        return ec;
      }
    }
    if (!opened) return std::make_error_code(std::errc::file_exists);
  } else {
    client::PathParts parts;
    if (auto ec = client::normalize_path(path, parts)) return ec;
    if (auto ec = walk.walk(parts.names)) return ec;
    if (parts.directory && !walk.last().is_directory()) return not_a_directory();
    node = walk.take_last();
    if (auto ec = open(node.inode, flags, of)) {
      PathWalk::let_go(*this, node);
      return ec;
    }
  }
  if (flags & O_TRUNC) {
    SetAttr sa;
    sa.valid = set::kSize | set::kFh;
    sa.fh = of.fh;
    Attr attr;
    if (auto ec = setattr(node.inode, sa, attr)) {
      release(node.inode, of.fh);
      PathWalk::let_go(*this, node);
      return ec;
    }
  }
  out.client_ = this;
  out.inode_ = node.inode;
  out.fh_ = of.fh;
  out.flags_ = flags;
  out.pinned_ = node.kind == Held::Kind::kPinned;
  return {};
}

std::error_code Client::read_file(std::string_view path, std::string& out) {
  File f;
  if (auto ec = open_file(path, O_RDONLY, f)) return ec;
  out.clear();
  const size_t chunk = negotiated().max_read;
  for (;;) {
    const size_t old = out.size();
    out.resize(old + chunk);
    size_t n = 0;
    auto ec = f.pread(old, std::as_writable_bytes(std::span(out)).subspan(old, chunk), n);
    out.resize(old + (ec ? 0 : n));
    if (ec) return ec;
    if (n < chunk) break;
  }
  return f.close();
}

std::error_code Client::write_file(std::string_view path, std::span<const std::byte> data,
                                   uint32_t mode) {
  File f;
  if (auto ec = open_file(path, O_WRONLY | O_CREAT | O_TRUNC, f, mode)) return ec;
  size_t n = 0;
  if (auto ec = f.pwrite(0, data, n)) return ec;
  return f.close();
}

// ---- File ----

File::~File() { close(); }

File::File(File&& other) noexcept
    : client_(std::exchange(other.client_, nullptr)), inode_(other.inode_), fh_(other.fh_),
      flags_(other.flags_), pinned_(other.pinned_) {}

File& File::operator=(File&& other) noexcept {
  if (this != &other) {
    close();
    client_ = std::exchange(other.client_, nullptr);
    inode_ = other.inode_;
    fh_ = other.fh_;
    flags_ = other.flags_;
    pinned_ = other.pinned_;
  }
  return *this;
}

std::error_code File::pread(uint64_t offset, std::span<std::byte> buf, size_t& done) {
  done = 0;
  if (!client_) return std::make_error_code(std::errc::bad_file_descriptor);
  while (done < buf.size()) {
    size_t n = 0;
    if (auto ec = client_->read(inode_, fh_, offset + done, buf.subspan(done), n)) return ec;
    if (n == 0) break;
    done += n;
  }
  return {};
}

std::error_code File::pwrite(uint64_t offset, std::span<const std::byte> data, size_t& done) {
  done = 0;
  if (!client_) return std::make_error_code(std::errc::bad_file_descriptor);
  while (done < data.size()) {
    size_t n = 0;
    if (auto ec = client_->write(inode_, fh_, offset + done, data.subspan(done), n)) return ec;
    if (n == 0) return std::make_error_code(std::errc::io_error);  // no progress: device bug
    done += n;
  }
  return {};
}

std::error_code File::stat(Attr& out) {
  if (!client_) return std::make_error_code(std::errc::bad_file_descriptor);
  return client_->getattr(inode_, out);
}

// As the kernel's FUSE does for /dev/fuse mounts (not its virtio-fs driver, which waits):
// FLUSH (written data) is waited for, RELEASE is not, and its error is not reported (see
// client.hpp). The node is forgotten once its handle is released, never before;
// Client::close waits for what is still pending. Where the application reaps completions,
// nothing may run the callback in time: RELEASE is waited for there.
std::error_code File::close() {
  if (!client_) return {};
  Client* c = std::exchange(client_, nullptr);
  std::error_code ec;
  if (flags_ & (O_WRONLY | O_RDWR)) ec = c->flush(inode_, fh_);
  client::FileReleases& pending = c->impl_->file_releases;
  client::Held node;
  node.kind = pinned_ ? client::Held::Kind::kPinned : client::Held::Kind::kOwned;
  node.inode = inode_;
  if (!pending.may_leave_pending()) {
    c->release(inode_, fh_, flags_);
    PathWalk::let_go(*c, node);
    return ec;
  }
  pending.started();
  c->release(inode_, fh_, flags_, [c, node](std::error_code) {
    PathWalk::let_go(*c, node);
    c->impl_->file_releases.finished();
  });
  return ec;
}

}  // namespace virtiofs
