// Path conveniences and File: compositions of inode operations. Every lookup reference taken on
// the way is given back with FORGET, so walking paths leaks nothing on the device.
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <utility>

#include "client/client_impl.hpp"
#include "client/path_walk.hpp"
#include "virtiofs/client.hpp"

namespace virtiofs {

namespace {

std::error_code not_a_directory() { return std::make_error_code(std::errc::not_a_directory); }
bool is_directory(const Entry& e) { return S_ISDIR(e.attr.mode); }

// Holds a lookup reference and forgets it on scope exit.
struct Ref {
  Client& fs;
  Entry entry;
  ~Ref() { fs.forget(entry.inode, 1); }
};

using client::ParentAndName;
using client::split_parent;
constexpr std::errc kCreatingRoot = std::errc::file_exists;  // the root exists
constexpr std::errc kRemovingRoot = std::errc::device_or_resource_busy;  // the share's mount point

}  // namespace

std::error_code Client::stat(std::string_view path, Attr& out) {
  Entry e;
  if (auto ec = resolve(path, e)) return ec;
  Ref ref{*this, e};
  out = e.attr;
  return {};
}

std::error_code Client::mkdir(std::string_view path, uint32_t mode) {
  ParentAndName at;
  if (auto ec = split_parent(*this, path, kCreatingRoot, at)) return ec;
  Ref p{*this, at.parent};
  Entry e;
  auto ec = mkdir(at.parent.inode, at.name, mode, e);
  if (!ec) forget(e.inode, 1);
  return ec;
}

// The device resolves names of UNLINK, RMDIR and RENAME only among nodes the driver holds a
// reference to, as the kernel always does (virtiofsd answers EIO otherwise): look them up first.
std::error_code Client::rmdir(std::string_view path) {
  ParentAndName at;
  Entry victim;
  if (auto ec = split_parent(*this, path, kRemovingRoot, at)) return ec;
  Ref p{*this, at.parent};
  if (auto ec = lookup(at.parent.inode, at.name, victim)) return ec;
  Ref v{*this, victim};
  return rmdir(at.parent.inode, at.name);
}

std::error_code Client::unlink(std::string_view path) {
  ParentAndName at;
  Entry victim;
  if (auto ec = split_parent(*this, path, kRemovingRoot, at)) return ec;
  Ref p{*this, at.parent};
  if (auto ec = lookup(at.parent.inode, at.name, victim)) return ec;
  Ref v{*this, victim};
  // "f/" names a directory: a file there is ENOTDIR (a directory gets the device's EISDIR).
  if (at.directory && !is_directory(victim)) return not_a_directory();
  return unlink(at.parent.inode, at.name);
}

std::error_code Client::rename(std::string_view from, std::string_view to) {
  ParentAndName src, dst;
  Entry moved, replaced;
  if (auto ec = split_parent(*this, from, kRemovingRoot, src)) return ec;
  Ref fp{*this, src.parent};
  if (auto ec = split_parent(*this, to, kRemovingRoot, dst)) return ec;
  Ref tp{*this, dst.parent};
  if (auto ec = lookup(src.parent.inode, src.name, moved)) return ec;
  Ref m{*this, moved};
  if ((src.directory || dst.directory) && !is_directory(moved)) return not_a_directory();
  const bool target_exists = !lookup(dst.parent.inode, dst.name, replaced);
  auto ec = rename(src.parent.inode, src.name, dst.parent.inode, dst.name, 0);
  if (target_exists) forget(replaced.inode, 1);
  return ec;
}

std::error_code Client::symlink(std::string_view target, std::string_view linkpath) {
  ParentAndName at;
  if (auto ec = split_parent(*this, linkpath, kCreatingRoot, at)) return ec;
  Ref p{*this, at.parent};
  if (at.directory) return not_a_directory();  // a symlink is no directory
  Entry e;
  auto ec = symlink(at.parent.inode, at.name, target, e);
  if (!ec) forget(e.inode, 1);
  return ec;
}

std::error_code Client::link(std::string_view existing, std::string_view newpath) {
  Entry target;
  if (auto ec = resolve(existing, target)) return ec;
  Ref t{*this, target};
  ParentAndName at;
  if (auto ec = split_parent(*this, newpath, kCreatingRoot, at)) return ec;
  Ref p{*this, at.parent};
  if (at.directory) return not_a_directory();  // hard links to directories do not exist
  Entry e;
  auto ec = link(target.inode, at.parent.inode, at.name, e);
  if (!ec) forget(e.inode, 1);
  return ec;
}

std::error_code Client::readlink(std::string_view path, std::string& target) {
  Entry e;
  if (auto ec = resolve(path, e)) return ec;
  Ref r{*this, e};
  return readlink(e.inode, target);
}

std::error_code Client::list_dir(std::string_view path, std::vector<DirEntry>& out) {
  out.clear();
  Entry e;
  if (auto ec = resolve(path, e)) return ec;
  Ref r{*this, e};
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

std::error_code Client::open_file(std::string_view path, uint32_t flags, File& out, uint32_t mode) {
  out.close();
  Entry entry;
  OpenFile of;
  if (flags & O_CREAT) {
    ParentAndName at;
    if (auto ec = split_parent(*this, path, kCreatingRoot, at)) return ec;
    Ref p{*this, at.parent};
    // O_CREAT with a trailing '/': EISDIR, as open(2) gives, existing or not.
    if (at.directory) return std::make_error_code(std::errc::is_a_directory);
    const Entry& parent = at.parent;
    const std::string_view name = at.name;
    // Like the kernel: CREATE only for a name that does not exist, and always exclusive, since
    // virtiofsd 7.2 aborts on a non-exclusive CREATE of an existing file. Lost race: open it.
    bool opened = false;
    for (int attempt = 0; attempt < 2 && !opened; ++attempt) {
      if (!(flags & O_EXCL)) {
        auto ec = lookup(parent.inode, name, entry);
        if (!ec) {
          if ((ec = open(entry.inode, flags & ~static_cast<uint32_t>(O_CREAT), of))) {
            forget(entry.inode, 1);
            return ec;
          }
          opened = true;
          break;
        }
        if (ec != std::errc::no_such_file_or_directory) return ec;
      }
      Created c;
      auto ec = create(parent.inode, name, flags | O_EXCL, mode, c);
      if (!ec) {
        entry = c.entry;
        of = c.file;
        opened = true;
      } else if (ec != std::errc::file_exists || (flags & O_EXCL)) {
        return ec;
      }
    }
    if (!opened) return std::make_error_code(std::errc::file_exists);
  } else {
    if (auto ec = resolve(path, entry)) return ec;
    if (auto ec = open(entry.inode, flags, of)) {
      forget(entry.inode, 1);
      return ec;
    }
  }
  if (flags & O_TRUNC) {
    SetAttr sa;
    sa.valid = set::kSize | set::kFh;
    sa.fh = of.fh;
    Attr attr;
    if (auto ec = setattr(entry.inode, sa, attr)) {
      release(entry.inode, of.fh);
      forget(entry.inode, 1);
      return ec;
    }
  }
  out.client_ = this;
  out.inode_ = entry.inode;
  out.fh_ = of.fh;
  out.flags_ = flags;
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
      flags_(other.flags_) {}

File& File::operator=(File&& other) noexcept {
  if (this != &other) {
    close();
    client_ = std::exchange(other.client_, nullptr);
    inode_ = other.inode_;
    fh_ = other.fh_;
    flags_ = other.flags_;
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

// As close(2): FLUSH (written data and locks) is waited for, RELEASE is not, and its error is
// no concern of the caller's. The node is forgotten once its handle is released, never before;
// Client::close waits for what is still pending. Where the application reaps completions,
// nothing may run the callback in time: RELEASE is waited for there.
std::error_code File::close() {
  if (!client_) return {};
  Client* c = std::exchange(client_, nullptr);
  std::error_code ec;
  if (flags_ & (O_WRONLY | O_RDWR)) ec = c->flush(inode_, fh_);
  client::FileReleases& pending = c->impl_->file_releases;
  if (!pending.may_leave_pending()) {
    c->release(inode_, fh_, flags_);
    c->forget(inode_, 1);
    return ec;
  }
  pending.started();
  c->release(inode_, fh_, flags_, [c, inode = inode_](std::error_code) {
    c->forget(inode, 1);
    c->impl_->file_releases.finished();
  });
  return ec;
}

}  // namespace virtiofs
