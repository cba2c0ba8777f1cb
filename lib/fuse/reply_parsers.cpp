// Reply parsers: a reply copied out of device memory and validated as a FUSE header turned into
// the caller's types, refusing what is short or absurd (EIO: the device broke the protocol).
#include <cstring>

#include "fuse/ops.hpp"

namespace virtiofs::fuse {

namespace {

Attr to_attr(const fuse_attr& a) {
  Attr r;
  r.ino = a.ino;
  r.size = a.size;
  r.blocks = a.blocks;
  r.atime = {a.atime, a.atimensec};
  r.mtime = {a.mtime, a.mtimensec};
  r.ctime = {a.ctime, a.ctimensec};
  r.mode = a.mode;
  r.nlink = a.nlink;
  r.uid = a.uid;
  r.gid = a.gid;
  r.rdev = a.rdev;
  r.blksize = a.blksize;
  return r;
}

std::error_code short_reply() { return std::make_error_code(std::errc::io_error); }

std::error_code to_entry(const fuse_entry_out& e, Entry& out) {
  // Node id 0 means "negative entry" in FUSE: no such name, cached for entry_valid (kept here
  // for the path cache; a reply that is an error leaves it 0).
  out.entry_valid = {e.entry_valid, e.entry_valid_nsec};
  if (e.nodeid == 0) return std::make_error_code(std::errc::no_such_file_or_directory);
  out.attr_valid = {e.attr_valid, e.attr_valid_nsec};
  out.inode = e.nodeid;
  out.generation = e.generation;
  out.attr = to_attr(e.attr);
  return {};
}

}  // namespace

std::error_code check_against_request(const Frame& request, const Reply& reply) {
  uint64_t asked = 0;
  if (request.opcode == FUSE_WRITE) {
    fuse_write_in in;
    std::memcpy(&in, request.args.data(), sizeof(in));
    asked = in.size;
  } else if (request.opcode == FUSE_COPY_FILE_RANGE) {
    fuse_copy_file_range_in in;
    std::memcpy(&in, request.args.data(), sizeof(in));
    asked = in.len;
  } else {
    return {};
  }
  fuse_write_out out;
  if (reply.get(out) && out.size > asked) return std::make_error_code(std::errc::io_error);
  return {};
}

std::error_code parse(const Reply& r, Entry& out) {
  fuse_entry_out e;
  if (!r.get(e)) return short_reply();
  return to_entry(e, out);
}

std::error_code parse(const Reply& r, Attr& out) {
  Timespec valid;
  return parse(r, out, valid);
}

std::error_code parse(const Reply& r, Attr& out, Timespec& valid) {
  fuse_attr_out a;
  if (!r.get(a)) return short_reply();
  out = to_attr(a.attr);
  valid = {a.attr_valid, a.attr_valid_nsec};
  return {};
}

std::error_code parse(const Reply& r, OpenFile& out) {
  fuse_open_out o;
  if (!r.get(o)) return short_reply();
  out = OpenFile{o.fh, o.open_flags};
  return {};
}

std::error_code parse(const Reply& r, Created& out) {
  struct {
    fuse_entry_out entry;
    fuse_open_out open;
  } c;
  static_assert(sizeof(c) == sizeof(fuse_entry_out) + sizeof(fuse_open_out));
  if (!r.get(c)) return short_reply();
  out.file = OpenFile{c.open.fh, c.open.open_flags};
  return to_entry(c.entry, out.entry);
}

std::error_code parse(const Reply& r, StatFs& out) {
  fuse_statfs_out s;
  if (!r.get(s)) return short_reply();
  const fuse_kstatfs& k = s.st;
  out = StatFs{k.blocks, k.bfree, k.bavail, k.files, k.ffree, k.bsize, k.namelen, k.frsize};
  return {};
}

std::error_code parse(const Reply& r, Lock& out) {
  fuse_lk_out l;
  if (!r.get(l)) return short_reply();
  out = Lock{l.lk.start, l.lk.end, l.lk.type, l.lk.pid};
  return {};
}

std::error_code parse_count(const Reply& r, Count kind, uint64_t& out) {
  switch (kind) {
    case Count::kWritten: {
      fuse_write_out w;
      if (!r.get(w)) return short_reply();
      out = w.size;
      return {};
    }
    case Count::kXattrSize: {
      fuse_getxattr_out g;
      if (r.get(g)) {
        out = g.size;
      } else {
        out = r.data_len;
      }
      return {};
    }
    case Count::kData:
      out = r.data_len;
      return {};
    case Count::kSeekOffset: {
      fuse_lseek_out l;
      if (!r.get(l)) return short_reply();
      out = l.offset;
      return {};
    }
  }
  return short_reply();
}

}  // namespace virtiofs::fuse
