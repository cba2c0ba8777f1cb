// Client's inode operations: each FUSE operation, described once in operations.hpp, runs
// either waited for (Impl::run) or started with a callback (Impl::start); nothing here but
// the forwarding, so the two forms take the same parameters and give the same verdict.
#include "client/client_impl.hpp"

namespace virtiofs {

std::error_code Client::lookup(Inode parent, std::string_view name, Entry& out, Stop stop) {
  return impl_->run(client::op::Lookup(parent, name), out, stop);
}
void Client::lookup(Inode parent, std::string_view name, Callback<Entry> done, Stop stop) {
  impl_->start(client::op::Lookup(parent, name), std::move(done), stop);
}

std::error_code Client::getattr(Inode inode, Attr& out, Stop stop) {
  return impl_->run(client::op::Getattr(inode), out, stop);
}
void Client::getattr(Inode inode, Callback<Attr> done, Stop stop) {
  impl_->start(client::op::Getattr(inode), std::move(done), stop);
}

std::error_code Client::setattr(Inode inode, const SetAttr& attr, Attr& out, Stop stop) {
  return impl_->run(client::op::Setattr(inode, attr), out, stop);
}
void Client::setattr(Inode inode, const SetAttr& attr, Callback<Attr> done, Stop stop) {
  impl_->start(client::op::Setattr(inode, attr), std::move(done), stop);
}

std::error_code Client::readlink(Inode inode, std::string& out, Stop stop) {
  return impl_->run(client::op::Readlink(inode), out, stop);
}
void Client::readlink(Inode inode, Callback<std::string> done, Stop stop) {
  impl_->start(client::op::Readlink(inode), std::move(done), stop);
}

std::error_code Client::symlink(Inode parent, std::string_view name, std::string_view target, Entry& out, Stop stop) {
  return impl_->run(client::op::Symlink(parent, name, target), out, stop);
}
void Client::symlink(Inode parent, std::string_view name, std::string_view target, Callback<Entry> done, Stop stop) {
  impl_->start(client::op::Symlink(parent, name, target), std::move(done), stop);
}

std::error_code Client::mknod(Inode parent, std::string_view name, uint32_t mode, uint32_t rdev, Entry& out, Stop stop) {
  return impl_->run(client::op::Mknod(parent, name, mode, rdev), out, stop);
}
void Client::mknod(Inode parent, std::string_view name, uint32_t mode, uint32_t rdev, Callback<Entry> done, Stop stop) {
  impl_->start(client::op::Mknod(parent, name, mode, rdev), std::move(done), stop);
}

std::error_code Client::mkdir(Inode parent, std::string_view name, uint32_t mode, Entry& out, Stop stop) {
  return impl_->run(client::op::Mkdir(parent, name, mode), out, stop);
}
void Client::mkdir(Inode parent, std::string_view name, uint32_t mode, Callback<Entry> done, Stop stop) {
  impl_->start(client::op::Mkdir(parent, name, mode), std::move(done), stop);
}

std::error_code Client::unlink(Inode parent, std::string_view name, Stop stop) {
  std::monostate nothing;
  return impl_->run(client::op::Unlink(parent, name), nothing, stop);
}
void Client::unlink(Inode parent, std::string_view name, DoneCallback done, Stop stop) {
  impl_->start(client::op::Unlink(parent, name), std::move(done), stop);
}

std::error_code Client::rmdir(Inode parent, std::string_view name, Stop stop) {
  std::monostate nothing;
  return impl_->run(client::op::Rmdir(parent, name), nothing, stop);
}
void Client::rmdir(Inode parent, std::string_view name, DoneCallback done, Stop stop) {
  impl_->start(client::op::Rmdir(parent, name), std::move(done), stop);
}

std::error_code Client::rename(Inode olddir, std::string_view oldname, Inode newdir, std::string_view newname, uint32_t flags, Stop stop) {
  std::monostate nothing;
  return impl_->run(client::op::Rename(olddir, oldname, newdir, newname, flags), nothing, stop);
}
void Client::rename(Inode olddir, std::string_view oldname, Inode newdir, std::string_view newname, uint32_t flags, DoneCallback done, Stop stop) {
  impl_->start(client::op::Rename(olddir, oldname, newdir, newname, flags), std::move(done), stop);
}

std::error_code Client::link(Inode inode, Inode newparent, std::string_view newname, Entry& out, Stop stop) {
  return impl_->run(client::op::Link(inode, newparent, newname), out, stop);
}
void Client::link(Inode inode, Inode newparent, std::string_view newname, Callback<Entry> done, Stop stop) {
  impl_->start(client::op::Link(inode, newparent, newname), std::move(done), stop);
}

std::error_code Client::open(Inode inode, uint32_t flags, OpenFile& out, Stop stop) {
  return impl_->run(client::op::Open(inode, flags), out, stop);
}
void Client::open(Inode inode, uint32_t flags, Callback<OpenFile> done, Stop stop) {
  impl_->start(client::op::Open(inode, flags), std::move(done), stop);
}

std::error_code Client::create(Inode parent, std::string_view name, uint32_t flags, uint32_t mode, Created& out, Stop stop) {
  return impl_->run(client::op::Create(parent, name, flags, mode), out, stop);
}
void Client::create(Inode parent, std::string_view name, uint32_t flags, uint32_t mode, Callback<Created> done, Stop stop) {
  impl_->start(client::op::Create(parent, name, flags, mode), std::move(done), stop);
}

std::error_code Client::read(Inode inode, uint64_t fh, uint64_t offset, std::span<std::byte> buf, size_t& out, Stop stop) {
  return impl_->run(client::op::Read(inode, fh, offset, buf), out, stop);
}
void Client::read(Inode inode, uint64_t fh, uint64_t offset, std::span<std::byte> buf, Callback<size_t> done, Stop stop) {
  impl_->start(client::op::Read(inode, fh, offset, buf), std::move(done), stop);
}

std::error_code Client::write(Inode inode, uint64_t fh, uint64_t offset, std::span<const std::byte> data, size_t& out, Stop stop) {
  return impl_->run(client::op::Write(inode, fh, offset, data), out, stop);
}
void Client::write(Inode inode, uint64_t fh, uint64_t offset, std::span<const std::byte> data, Callback<size_t> done, Stop stop) {
  impl_->start(client::op::Write(inode, fh, offset, data), std::move(done), stop);
}

std::error_code Client::statfs(Inode inode, StatFs& out, Stop stop) {
  return impl_->run(client::op::Statfs(inode), out, stop);
}
void Client::statfs(Inode inode, Callback<StatFs> done, Stop stop) {
  impl_->start(client::op::Statfs(inode), std::move(done), stop);
}

std::error_code Client::release(Inode inode, uint64_t fh, uint32_t flags, Stop stop) {
  std::monostate nothing;
  return impl_->run(client::op::Release(inode, fh, flags), nothing, stop);
}
void Client::release(Inode inode, uint64_t fh, uint32_t flags, DoneCallback done, Stop stop) {
  impl_->start(client::op::Release(inode, fh, flags), std::move(done), stop);
}

std::error_code Client::fsync(Inode inode, uint64_t fh, bool datasync, Stop stop) {
  std::monostate nothing;
  return impl_->run(client::op::Fsync(inode, fh, datasync), nothing, stop);
}
void Client::fsync(Inode inode, uint64_t fh, bool datasync, DoneCallback done, Stop stop) {
  impl_->start(client::op::Fsync(inode, fh, datasync), std::move(done), stop);
}

std::error_code Client::flush(Inode inode, uint64_t fh, uint64_t lock_owner, Stop stop) {
  std::monostate nothing;
  return impl_->run(client::op::Flush(inode, fh, lock_owner), nothing, stop);
}
void Client::flush(Inode inode, uint64_t fh, uint64_t lock_owner, DoneCallback done, Stop stop) {
  impl_->start(client::op::Flush(inode, fh, lock_owner), std::move(done), stop);
}

std::error_code Client::setxattr(Inode inode, std::string_view name, std::span<const std::byte> value, uint32_t flags, Stop stop) {
  std::monostate nothing;
  return impl_->run(client::op::Setxattr(inode, name, value, flags), nothing, stop);
}
void Client::setxattr(Inode inode, std::string_view name, std::span<const std::byte> value, uint32_t flags, DoneCallback done, Stop stop) {
  impl_->start(client::op::Setxattr(inode, name, value, flags), std::move(done), stop);
}

std::error_code Client::getxattr(Inode inode, std::string_view name, std::span<std::byte> value, size_t& out, Stop stop) {
  return impl_->run(client::op::Getxattr(inode, name, value), out, stop);
}
void Client::getxattr(Inode inode, std::string_view name, std::span<std::byte> value, Callback<size_t> done, Stop stop) {
  impl_->start(client::op::Getxattr(inode, name, value), std::move(done), stop);
}

std::error_code Client::listxattr(Inode inode, std::span<std::byte> list, size_t& out, Stop stop) {
  return impl_->run(client::op::Listxattr(inode, list), out, stop);
}
void Client::listxattr(Inode inode, std::span<std::byte> list, Callback<size_t> done, Stop stop) {
  impl_->start(client::op::Listxattr(inode, list), std::move(done), stop);
}

std::error_code Client::removexattr(Inode inode, std::string_view name, Stop stop) {
  std::monostate nothing;
  return impl_->run(client::op::Removexattr(inode, name), nothing, stop);
}
void Client::removexattr(Inode inode, std::string_view name, DoneCallback done, Stop stop) {
  impl_->start(client::op::Removexattr(inode, name), std::move(done), stop);
}

std::error_code Client::opendir(Inode inode, OpenFile& out, Stop stop) {
  return impl_->run(client::op::Opendir(inode), out, stop);
}
void Client::opendir(Inode inode, Callback<OpenFile> done, Stop stop) {
  impl_->start(client::op::Opendir(inode), std::move(done), stop);
}

std::error_code Client::readdir(Inode inode, uint64_t fh, uint64_t offset, std::vector<DirEntry>& out, Stop stop) {
  return impl_->run(client::op::Readdir(inode, fh, offset), out, stop);
}
void Client::readdir(Inode inode, uint64_t fh, uint64_t offset, Callback<std::vector<DirEntry>> done, Stop stop) {
  impl_->start(client::op::Readdir(inode, fh, offset), std::move(done), stop);
}

std::error_code Client::readdirplus(Inode inode, uint64_t fh, uint64_t offset, std::vector<std::pair<DirEntry, Entry>>& out, Stop stop) {
  return impl_->run(client::op::Readdirplus(inode, fh, offset), out, stop);
}
void Client::readdirplus(Inode inode, uint64_t fh, uint64_t offset, Callback<std::vector<std::pair<DirEntry, Entry>>> done, Stop stop) {
  impl_->start(client::op::Readdirplus(inode, fh, offset), std::move(done), stop);
}

std::error_code Client::releasedir(Inode inode, uint64_t fh, Stop stop) {
  std::monostate nothing;
  return impl_->run(client::op::Releasedir(inode, fh), nothing, stop);
}
void Client::releasedir(Inode inode, uint64_t fh, DoneCallback done, Stop stop) {
  impl_->start(client::op::Releasedir(inode, fh), std::move(done), stop);
}

std::error_code Client::fsyncdir(Inode inode, uint64_t fh, bool datasync, Stop stop) {
  std::monostate nothing;
  return impl_->run(client::op::Fsyncdir(inode, fh, datasync), nothing, stop);
}
void Client::fsyncdir(Inode inode, uint64_t fh, bool datasync, DoneCallback done, Stop stop) {
  impl_->start(client::op::Fsyncdir(inode, fh, datasync), std::move(done), stop);
}

std::error_code Client::access(Inode inode, uint32_t mask, Stop stop) {
  std::monostate nothing;
  return impl_->run(client::op::Access(inode, mask), nothing, stop);
}
void Client::access(Inode inode, uint32_t mask, DoneCallback done, Stop stop) {
  impl_->start(client::op::Access(inode, mask), std::move(done), stop);
}

std::error_code Client::fallocate(Inode inode, uint64_t fh, uint64_t offset, uint64_t length, uint32_t mode, Stop stop) {
  std::monostate nothing;
  return impl_->run(client::op::Fallocate(inode, fh, offset, length, mode), nothing, stop);
}
void Client::fallocate(Inode inode, uint64_t fh, uint64_t offset, uint64_t length, uint32_t mode, DoneCallback done, Stop stop) {
  impl_->start(client::op::Fallocate(inode, fh, offset, length, mode), std::move(done), stop);
}

std::error_code Client::lseek(Inode inode, uint64_t fh, uint64_t offset, uint32_t whence, uint64_t& out, Stop stop) {
  return impl_->run(client::op::Lseek(inode, fh, offset, whence), out, stop);
}
void Client::lseek(Inode inode, uint64_t fh, uint64_t offset, uint32_t whence, Callback<uint64_t> done, Stop stop) {
  impl_->start(client::op::Lseek(inode, fh, offset, whence), std::move(done), stop);
}

std::error_code Client::copy_file_range(Inode in_inode, uint64_t in_fh, uint64_t in_off, Inode out_inode, uint64_t out_fh, uint64_t out_off, uint64_t len, uint64_t& out, Stop stop) {
  return impl_->run(client::op::CopyFileRange(in_inode, in_fh, in_off, out_inode, out_fh, out_off, len), out, stop);
}
void Client::copy_file_range(Inode in_inode, uint64_t in_fh, uint64_t in_off, Inode out_inode, uint64_t out_fh, uint64_t out_off, uint64_t len, Callback<uint64_t> done, Stop stop) {
  impl_->start(client::op::CopyFileRange(in_inode, in_fh, in_off, out_inode, out_fh, out_off, len), std::move(done), stop);
}

std::error_code Client::getlk(Inode inode, uint64_t fh, uint64_t owner, const Lock& lock, Lock& out, Stop stop) {
  return impl_->run(client::op::Getlk(inode, fh, owner, lock), out, stop);
}
void Client::getlk(Inode inode, uint64_t fh, uint64_t owner, const Lock& lock, Callback<Lock> done, Stop stop) {
  impl_->start(client::op::Getlk(inode, fh, owner, lock), std::move(done), stop);
}

std::error_code Client::setlk(Inode inode, uint64_t fh, uint64_t owner, const Lock& lock, bool wait, Stop stop) {
  std::monostate nothing;
  return impl_->run(client::op::Setlk(inode, fh, owner, lock, wait), nothing, stop);
}
void Client::setlk(Inode inode, uint64_t fh, uint64_t owner, const Lock& lock, bool wait, DoneCallback done, Stop stop) {
  impl_->start(client::op::Setlk(inode, fh, owner, lock, wait), std::move(done), stop);
}

}  // namespace virtiofs
