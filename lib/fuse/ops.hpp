// Builders for every FUSE request a file system needs, and parsers from a validated Reply to the
// public value types. Builders never allocate: names and data are referenced, not copied, until
// the session stages them into device memory.
#pragma once

#include <span>
#include <string_view>
#include <system_error>

#include "fuse/frame.hpp"
#include "virtiofs/types.hpp"

namespace virtiofs::fuse {

using Bytes = std::span<const std::byte>;
using MutableBytes = std::span<std::byte>;

// NAME_MAX: longer names are refused before anything is sent.
inline constexpr size_t kMaxName = 255;
inline constexpr size_t kMaxPath = 4096;

Frame make_lookup(Inode parent, std::string_view name);
Frame make_forget(Inode inode, uint64_t nlookup);
Frame make_getattr(Inode inode, const uint64_t* fh);
Frame make_setattr(Inode inode, const SetAttr& attr);
Frame make_readlink(Inode inode, MutableBytes target);
Frame make_symlink(Inode parent, std::string_view name, std::string_view target);
Frame make_mknod(Inode parent, std::string_view name, uint32_t mode, uint32_t rdev, uint32_t umask);
Frame make_mkdir(Inode parent, std::string_view name, uint32_t mode, uint32_t umask);
Frame make_unlink(Inode parent, std::string_view name);
Frame make_rmdir(Inode parent, std::string_view name);
Frame make_rename(Inode olddir, std::string_view oldname, Inode newdir, std::string_view newname,
                  uint32_t flags);
Frame make_link(Inode inode, Inode newparent, std::string_view newname);
Frame make_open(Inode inode, uint32_t flags, bool dir);
Frame make_create(Inode parent, std::string_view name, uint32_t flags, uint32_t mode, uint32_t umask);
Frame make_read(Inode inode, uint64_t fh, uint64_t offset, MutableBytes buf, bool dir, bool plus);
Frame make_write(Inode inode, uint64_t fh, uint64_t offset, Bytes data);
Frame make_statfs(Inode inode);
Frame make_release(Inode inode, uint64_t fh, uint32_t flags, bool dir);
Frame make_fsync(Inode inode, uint64_t fh, bool datasync, bool dir);
Frame make_flush(Inode inode, uint64_t fh, uint64_t lock_owner);
Frame make_setxattr(Inode inode, std::string_view name, Bytes value, uint32_t flags);
Frame make_getxattr(Inode inode, std::string_view name, MutableBytes value);
Frame make_listxattr(Inode inode, MutableBytes list);
Frame make_removexattr(Inode inode, std::string_view name);
Frame make_access(Inode inode, uint32_t mask);
Frame make_fallocate(Inode inode, uint64_t fh, uint64_t offset, uint64_t length, uint32_t mode);
Frame make_lseek(Inode inode, uint64_t fh, uint64_t offset, uint32_t whence);
Frame make_copy_file_range(Inode in_inode, uint64_t in_fh, uint64_t in_off, Inode out_inode,
                           uint64_t out_fh, uint64_t out_off, uint64_t len);
Frame make_getlk(Inode inode, uint64_t fh, uint64_t owner, const Lock& lock);
Frame make_setlk(Inode inode, uint64_t fh, uint64_t owner, const Lock& lock, bool wait);
Frame make_destroy();

// Each parser checks the fixed reply struct is complete and converts it.
std::error_code parse(const Reply& r, Entry& out);
std::error_code parse(const Reply& r, Attr& out);
std::error_code parse(const Reply& r, Attr& out, Timespec& valid);  // with attr_valid
std::error_code parse(const Reply& r, OpenFile& out);
std::error_code parse(const Reply& r, Created& out);
std::error_code parse(const Reply& r, StatFs& out);
std::error_code parse(const Reply& r, Lock& out);
// For replies that are a count: WRITE and COPY_FILE_RANGE (fuse_write_out.size), GETXATTR and
// LISTXATTR (fuse_getxattr_out.size when asked with an empty buffer, else the data length),
// READ/READDIR/READLINK (data length), LSEEK (offset).
enum class Count { kWritten, kXattrSize, kData, kSeekOffset };
std::error_code parse_count(const Reply& r, Count kind, uint64_t& out);
// Checks a reply against the request it answers where the protocol bounds one by the other: a
// WRITE or COPY_FILE_RANGE that claims more bytes than it was given is a lie (io_error).
std::error_code check_against_request(const Frame& request, const Reply& reply);

// Returns invalid_argument for an empty name, a name over kMaxName or one holding '/' or NUL.
std::error_code check_name(std::string_view name);

}  // namespace virtiofs::fuse
