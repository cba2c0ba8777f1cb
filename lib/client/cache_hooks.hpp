// How each operation's outcome updates the path cache (path_cache.hpp): called once per
// request the device answered (or that was given up on), for the inode API and the path calls,
// waited for or asynchronous alike (Runner::result). `sent` is the cache's epoch when the
// request went out. Changes of this client are applied whatever the outcome: a failed or
// cancelled mutation may still have happened on the device, and dropping is always safe; one
// given up while the device holds it may also happen later (may_change_cached).
#pragma once

#include <fcntl.h>

#include <system_error>

#include "client/file_operations.hpp"
#include "client/operations.hpp"
#include "client/path_cache.hpp"
#include "fuse/ops.hpp"

namespace virtiofs::client {

// The requests whose hooks below drop something: one given up while the device holds it
// (Session::abandon) keeps the cache from storing until its reply comes (PathCache).
inline bool may_change_cached(uint32_t opcode) {
  switch (opcode) {
    case FUSE_SETATTR: case FUSE_UNLINK: case FUSE_RMDIR: case FUSE_MKNOD: case FUSE_MKDIR:
    case FUSE_SYMLINK: case FUSE_CREATE: case FUSE_LINK: case FUSE_RENAME: case FUSE_RENAME2:
    case FUSE_WRITE: case FUSE_FALLOCATE: case FUSE_COPY_FILE_RANGE: case FUSE_SETXATTR:
    case FUSE_REMOVEXATTR: case FUSE_OPEN:
      return true;
    default:
      return false;
  }
}

// Operations that neither name nor change anything the cache holds.
template <class Op, class Result>
void observe(PathCache&, const Op&, const fuse::Reply&, const Result&, std::error_code, uint64_t) {}

inline void observe(PathCache& c, const op::Lookup& op, const fuse::Reply&, const Entry& e,
                    std::error_code ec, uint64_t sent) {
  if (!ec)
    c.refresh(op.parent, op.name, e, sent);
  else if (ec == std::errc::no_such_file_or_directory)
    c.refresh(op.parent, op.name, Entry{}, sent);  // gone: a cached node for it is dropped
}
inline void observe(PathCache& c, const op::Getattr& op, const fuse::Reply& r, const Attr&,
                    std::error_code ec, uint64_t sent) {
  Attr attr;
  Timespec valid;
  if (!ec && !fuse::parse(r, attr, valid)) c.store_attr(op.inode, attr, valid, sent);
}
inline void observe(PathCache& c, const op::Setattr& op, const fuse::Reply& r, const Attr&,
                    std::error_code ec, uint64_t sent) {
  Attr attr;
  Timespec valid;
  if (!ec && !fuse::parse(r, attr, valid))
    c.own_setattr(op.inode, attr, valid, sent);
  else
    c.drop_attr(op.inode);
}
// Removing or creating a name: the name (a negative entry too) and the directory's attributes.
template <class Result>
void observe(PathCache& c, const op::Unlink& op, const fuse::Reply&, const Result&,
             std::error_code, uint64_t) {
  c.drop_name(op.parent, op.name, 0, true);  // the victim's link count and ctime with it
}
template <class Result>
void observe(PathCache& c, const op::Rmdir& op, const fuse::Reply&, const Result&,
             std::error_code, uint64_t) {
  c.drop_name(op.parent, op.name, 0, true);
}
template <class Result>
void observe(PathCache& c, const op::Mknod& op, const fuse::Reply&, const Result&,
             std::error_code, uint64_t) {
  c.drop_name(op.parent, op.name);
}
template <class Result>
void observe(PathCache& c, const op::Mkdir& op, const fuse::Reply&, const Result&,
             std::error_code, uint64_t) {
  c.drop_name(op.parent, op.name);
}
template <class Result>
void observe(PathCache& c, const op::Symlink& op, const fuse::Reply&, const Result&,
             std::error_code, uint64_t) {
  c.drop_name(op.parent, op.name);
}
// CREATE without O_EXCL opens an existing file, which O_TRUNC truncates (under any name).
inline void observe(PathCache& c, const op::Create& op, const fuse::Reply&, const Created& out,
                    std::error_code ec, uint64_t) {
  c.drop_name(op.parent, op.name, !ec && (op.flags & O_TRUNC) ? out.entry.inode : 0);
}
// OPEN with O_TRUNC truncates on the device: size, mtime, ctime (as fuse_finish_open).
inline void observe(PathCache& c, const op::Open& op, const fuse::Reply&, const OpenFile&,
                    std::error_code, uint64_t) {
  if (op.flags & O_TRUNC) c.drop_attr(op.inode);
}
template <class Result>
void observe(PathCache& c, const op::Link& op, const fuse::Reply&, const Result&,
             std::error_code, uint64_t) {
  c.drop_name(op.newparent, op.newname, op.inode);  // the target's link count and ctime
}
// Both names, RENAME_EXCHANGE too; a directory moved loses the names below it with its last
// cached name (PathCache::erase), to be looked up again under the new one.
template <class Result>
void observe(PathCache& c, const op::Rename& op, const fuse::Reply&, const Result&,
             std::error_code, uint64_t) {
  c.drop_names(op.olddir, op.oldname, op.newdir, op.newname);
}
// Size, mtime, ctime.
template <class Result>
void observe(PathCache& c, const op::Write& op, const fuse::Reply&, const Result&,
             std::error_code, uint64_t) {
  c.drop_attr(op.inode);
}
template <class Result>
void observe(PathCache& c, const op::Fallocate& op, const fuse::Reply&, const Result&,
             std::error_code, uint64_t) {
  c.drop_attr(op.inode);
}
template <class Result>
void observe(PathCache& c, const op::CopyFileRange& op, const fuse::Reply&, const Result&,
             std::error_code, uint64_t) {
  c.drop_attr(op.out_inode);
}
template <class Result>
void observe(PathCache& c, const op::Setxattr& op, const fuse::Reply&, const Result&,
             std::error_code, uint64_t) {
  c.drop_attr(op.inode);  // ctime
}
template <class Result>
void observe(PathCache& c, const op::Removexattr& op, const fuse::Reply&, const Result&,
             std::error_code, uint64_t) {
  c.drop_attr(op.inode);
}

}  // namespace virtiofs::client
