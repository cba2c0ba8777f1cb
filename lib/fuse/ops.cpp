#include "fuse/ops.hpp"

#include <fcntl.h>

namespace virtiofs::fuse {

static_assert(set::kMode == FATTR_MODE && set::kSize == FATTR_SIZE && set::kFh == FATTR_FH &&
              set::kMtimeNow == FATTR_MTIME_NOW);

namespace {

constexpr std::byte kNul[1] = {std::byte{0}};

Bytes as_bytes(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

Frame frame(uint32_t opcode, Inode nodeid) {
  Frame f;
  f.opcode = opcode;
  f.nodeid = nodeid;
  return f;
}

void add_name(Frame& f, std::string_view name) {
  f.add_in(as_bytes(name));
  f.add_in(kNul);
}

Frame entry_frame(uint32_t opcode, Inode parent) {
  Frame f = frame(opcode, parent);
  f.out_args_len = sizeof(fuse_entry_out);
  return f;
}

}  // namespace

std::error_code check_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxName || name.find('/') != std::string_view::npos ||
      name.find('\0') != std::string_view::npos || name == "." || name == "..")
    return std::make_error_code(std::errc::invalid_argument);
  return {};
}

Frame make_lookup(Inode parent, std::string_view name) {
  Frame f = entry_frame(FUSE_LOOKUP, parent);
  add_name(f, name);
  return f;
}

Frame make_forget(Inode inode, uint64_t nlookup) {
  Frame f = frame(FUSE_FORGET, inode);
  f.set_args(fuse_forget_in{nlookup});
  f.expects_reply = false;
  return f;
}

Frame make_getattr(Inode inode, const uint64_t* fh) {
  Frame f = frame(FUSE_GETATTR, inode);
  fuse_getattr_in in{};
  if (fh) {
    in.getattr_flags = FUSE_GETATTR_FH;
    in.fh = *fh;
  }
  f.set_args(in);
  f.out_args_len = sizeof(fuse_attr_out);
  return f;
}

Frame make_setattr(Inode inode, const SetAttr& a) {
  Frame f = frame(FUSE_SETATTR, inode);
  fuse_setattr_in in{};
  in.valid = a.valid;
  in.fh = a.fh;
  in.size = a.size;
  in.atime = a.atime.sec;
  in.atimensec = a.atime.nsec;
  in.mtime = a.mtime.sec;
  in.mtimensec = a.mtime.nsec;
  in.mode = a.mode;
  in.uid = a.uid;
  in.gid = a.gid;
  f.set_args(in);
  f.out_args_len = sizeof(fuse_attr_out);
  return f;
}

Frame make_readlink(Inode inode, MutableBytes target) {
  Frame f = frame(FUSE_READLINK, inode);
  f.out_data = target;
  return f;
}

Frame make_symlink(Inode parent, std::string_view name, std::string_view target) {
  Frame f = entry_frame(FUSE_SYMLINK, parent);
  add_name(f, name);
  add_name(f, target);
  return f;
}

Frame make_mknod(Inode parent, std::string_view name, uint32_t mode, uint32_t rdev, uint32_t umask) {
  Frame f = entry_frame(FUSE_MKNOD, parent);
  f.set_args(fuse_mknod_in{mode, rdev, umask, 0});
  add_name(f, name);
  return f;
}

Frame make_mkdir(Inode parent, std::string_view name, uint32_t mode, uint32_t umask) {
  Frame f = entry_frame(FUSE_MKDIR, parent);
  f.set_args(fuse_mkdir_in{mode, umask});
  add_name(f, name);
  return f;
}

Frame make_unlink(Inode parent, std::string_view name) {
  Frame f = frame(FUSE_UNLINK, parent);
  add_name(f, name);
  return f;
}

Frame make_rmdir(Inode parent, std::string_view name) {
  Frame f = frame(FUSE_RMDIR, parent);
  add_name(f, name);
  return f;
}

Frame make_rename(Inode olddir, std::string_view oldname, Inode newdir, std::string_view newname,
                  uint32_t flags) {
  Frame f = frame(flags ? FUSE_RENAME2 : FUSE_RENAME, olddir);
  if (flags) {
    f.set_args(fuse_rename2_in{newdir, flags, 0});
  } else {
    f.set_args(fuse_rename_in{newdir});
  }
  add_name(f, oldname);
  add_name(f, newname);
  return f;
}

Frame make_link(Inode inode, Inode newparent, std::string_view newname) {
  Frame f = entry_frame(FUSE_LINK, newparent);
  f.set_args(fuse_link_in{inode});
  add_name(f, newname);
  return f;
}

Frame make_open(Inode inode, uint32_t flags, bool dir) {
  Frame f = frame(dir ? FUSE_OPENDIR : FUSE_OPEN, inode);
  // The device opens on our behalf; O_CREAT/O_EXCL/O_NOCTTY/O_TRUNC are the kernel's to handle
  // (CREATE and SETATTR), as in the Linux FUSE client.
  f.set_args(fuse_open_in{flags & ~static_cast<uint32_t>(O_CREAT | O_EXCL | O_NOCTTY), 0});
  f.out_args_len = sizeof(fuse_open_out);
  return f;
}

Frame make_create(Inode parent, std::string_view name, uint32_t flags, uint32_t mode, uint32_t umask) {
  Frame f = frame(FUSE_CREATE, parent);
  f.set_args(fuse_create_in{flags, mode, umask, 0});
  add_name(f, name);
  f.out_args_len = sizeof(fuse_entry_out) + sizeof(fuse_open_out);
  return f;
}

Frame make_read(Inode inode, uint64_t fh, uint64_t offset, MutableBytes buf, bool dir, bool plus) {
  Frame f = frame(dir ? (plus ? FUSE_READDIRPLUS : FUSE_READDIR) : FUSE_READ, inode);
  fuse_read_in in{};
  in.fh = fh;
  in.offset = offset;
  in.size = static_cast<uint32_t>(buf.size());
  f.set_args(in);
  f.out_data = buf;
  return f;
}

Frame make_write(Inode inode, uint64_t fh, uint64_t offset, Bytes data) {
  Frame f = frame(FUSE_WRITE, inode);
  fuse_write_in in{};
  in.fh = fh;
  in.offset = offset;
  in.size = static_cast<uint32_t>(data.size());
  f.set_args(in);
  f.add_in(data);
  f.out_args_len = sizeof(fuse_write_out);
  return f;
}

Frame make_statfs(Inode inode) {
  Frame f = frame(FUSE_STATFS, inode);
  f.out_args_len = sizeof(fuse_statfs_out);
  return f;
}

Frame make_release(Inode inode, uint64_t fh, uint32_t flags, bool dir) {
  Frame f = frame(dir ? FUSE_RELEASEDIR : FUSE_RELEASE, inode);
  fuse_release_in in{};
  in.fh = fh;
  in.flags = flags;
  f.set_args(in);
  return f;
}

Frame make_fsync(Inode inode, uint64_t fh, bool datasync, bool dir) {
  Frame f = frame(dir ? FUSE_FSYNCDIR : FUSE_FSYNC, inode);
  fuse_fsync_in in{};
  in.fh = fh;
  in.fsync_flags = datasync ? 1 : 0;
  f.set_args(in);
  return f;
}

Frame make_flush(Inode inode, uint64_t fh, uint64_t lock_owner) {
  Frame f = frame(FUSE_FLUSH, inode);
  fuse_flush_in in{};
  in.fh = fh;
  in.lock_owner = lock_owner;
  f.set_args(in);
  return f;
}

Frame make_setxattr(Inode inode, std::string_view name, Bytes value, uint32_t flags) {
  Frame f = frame(FUSE_SETXATTR, inode);
  // Without FUSE_SETXATTR_EXT negotiated the struct is the short, 8-byte compat form.
  fuse_setxattr_in in{};
  in.size = static_cast<uint32_t>(value.size());
  in.flags = flags;
  f.set_args(in);
  f.args_len = FUSE_COMPAT_SETXATTR_IN_SIZE;
  add_name(f, name);
  f.add_in(value);
  return f;
}

Frame make_getxattr(Inode inode, std::string_view name, MutableBytes value) {
  Frame f = frame(FUSE_GETXATTR, inode);
  f.set_args(fuse_getxattr_in{static_cast<uint32_t>(value.size()), 0});
  add_name(f, name);
  if (value.empty()) {
    f.out_args_len = sizeof(fuse_getxattr_out);
  } else {
    f.out_data = value;
  }
  return f;
}

Frame make_listxattr(Inode inode, MutableBytes list) {
  Frame f = frame(FUSE_LISTXATTR, inode);
  f.set_args(fuse_getxattr_in{static_cast<uint32_t>(list.size()), 0});
  if (list.empty()) {
    f.out_args_len = sizeof(fuse_getxattr_out);
  } else {
    f.out_data = list;
  }
  return f;
}

Frame make_removexattr(Inode inode, std::string_view name) {
  Frame f = frame(FUSE_REMOVEXATTR, inode);
  add_name(f, name);
  return f;
}

Frame make_access(Inode inode, uint32_t mask) {
  Frame f = frame(FUSE_ACCESS, inode);
  f.set_args(fuse_access_in{mask, 0});
  return f;
}

Frame make_fallocate(Inode inode, uint64_t fh, uint64_t offset, uint64_t length, uint32_t mode) {
  Frame f = frame(FUSE_FALLOCATE, inode);
  f.set_args(fuse_fallocate_in{fh, offset, length, mode, 0});
  return f;
}

Frame make_lseek(Inode inode, uint64_t fh, uint64_t offset, uint32_t whence) {
  Frame f = frame(FUSE_LSEEK, inode);
  f.set_args(fuse_lseek_in{fh, offset, whence, 0});
  f.out_args_len = sizeof(fuse_lseek_out);
  return f;
}

Frame make_copy_file_range(Inode in_inode, uint64_t in_fh, uint64_t in_off, Inode out_inode,
                           uint64_t out_fh, uint64_t out_off, uint64_t len) {
  Frame f = frame(FUSE_COPY_FILE_RANGE, in_inode);
  f.set_args(fuse_copy_file_range_in{in_fh, in_off, out_inode, out_fh, out_off, len, 0});
  f.out_args_len = sizeof(fuse_write_out);
  return f;
}

namespace {
Frame lk_frame(uint32_t opcode, Inode inode, uint64_t fh, uint64_t owner, const Lock& lock) {
  Frame f = frame(opcode, inode);
  fuse_lk_in in{};
  in.fh = fh;
  in.owner = owner;
  in.lk = fuse_file_lock{lock.start, lock.end, lock.type, lock.pid};
  f.set_args(in);
  return f;
}
}  // namespace

Frame make_getlk(Inode inode, uint64_t fh, uint64_t owner, const Lock& lock) {
  Frame f = lk_frame(FUSE_GETLK, inode, fh, owner, lock);
  f.out_args_len = sizeof(fuse_lk_out);
  return f;
}

Frame make_setlk(Inode inode, uint64_t fh, uint64_t owner, const Lock& lock, bool wait) {
  return lk_frame(wait ? FUSE_SETLKW : FUSE_SETLK, inode, fh, owner, lock);
}

Frame make_destroy() { return frame(FUSE_DESTROY, 0); }

}  // namespace virtiofs::fuse
