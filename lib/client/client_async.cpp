// Client's asynchronous inode operations: each builds its frame into a pooled AsyncCall and
// completes through the same verdict as its sync twin (client_impl.hpp).
#include <fcntl.h>

#include "client/client_impl.hpp"

namespace virtiofs {

namespace {
template <class T>
void fail_now(Callback<T>& done, std::error_code ec) {
  done(ec, T{});
}
}  // namespace

void Client::lookup(Inode parent, std::string_view name, Callback<Entry> done) {
  if (auto ec = fuse::check_name(name)) return fail_now(done, ec);
  impl_->call_async<Entry>(
      [&](AsyncCall& c) {
        c.names[0].assign(name);
        c.frame = fuse::make_lookup(parent, c.names[0]);
      },
      parse_value<Entry>, std::move(done));
}

void Client::getattr(Inode inode, Callback<Attr> done) {
  impl_->call_async<Attr>([&](AsyncCall& c) { c.frame = fuse::make_getattr(inode, nullptr); },
                          parse_value<Attr>, std::move(done));
}

void Client::open(Inode inode, uint32_t flags, Callback<OpenFile> done) {
  impl_->call_async<OpenFile>([&](AsyncCall& c) { c.frame = fuse::make_open(inode, flags, false); },
                              parse_value<OpenFile>, std::move(done));
}

void Client::create(Inode parent, std::string_view name, uint32_t flags, uint32_t mode,
                    Callback<Created> done) {
  if (auto ec = fuse::check_name(name)) return fail_now(done, ec);
  impl_->call_async<Created>(
      [&](AsyncCall& c) {
        c.names[0].assign(name);
        c.frame = fuse::make_create(parent, c.names[0], flags, mode, 0);
      },
      parse_value<Created>, std::move(done));
}

void Client::read(Inode inode, uint64_t fh, uint64_t offset, std::span<std::byte> buf,
                  Callback<size_t> done) {
  buf = buf.first(std::min<size_t>(buf.size(), negotiated().max_read));
  impl_->call_async<size_t>(
      [&](AsyncCall& c) { c.frame = fuse::make_read(inode, fh, offset, buf, false, false); },
      parse_data, std::move(done));
}

void Client::write(Inode inode, uint64_t fh, uint64_t offset, std::span<const std::byte> data,
                   Callback<size_t> done) {
  data = data.first(std::min<size_t>(data.size(), negotiated().max_write));
  impl_->call_async<size_t>([&](AsyncCall& c) { c.frame = fuse::make_write(inode, fh, offset, data); },
                            parse_written, std::move(done));
}

void Client::release(Inode inode, uint64_t fh, DoneCallback done) {
  impl_->call_async<std::monostate>(
      [&](AsyncCall& c) { c.frame = fuse::make_release(inode, fh, 0, false); }, parse_none,
      Impl::unit(std::move(done)));
}

void Client::mkdir(Inode parent, std::string_view name, uint32_t mode, Callback<Entry> done) {
  if (auto ec = fuse::check_name(name)) return fail_now(done, ec);
  impl_->call_async<Entry>(
      [&](AsyncCall& c) {
        c.names[0].assign(name);
        c.frame = fuse::make_mkdir(parent, c.names[0], mode, 0);
      },
      parse_value<Entry>, std::move(done));
}

void Client::unlink(Inode parent, std::string_view name, DoneCallback done) {
  if (auto ec = fuse::check_name(name)) return done(ec);
  impl_->call_async<std::monostate>(
      [&](AsyncCall& c) {
        c.names[0].assign(name);
        c.frame = fuse::make_unlink(parent, c.names[0]);
      },
      parse_none, Impl::unit(std::move(done)));
}

void Client::rename(Inode olddir, std::string_view oldname, Inode newdir, std::string_view newname,
                    DoneCallback done) {
  if (auto ec = fuse::check_name(oldname)) return done(ec);
  if (auto ec = fuse::check_name(newname)) return done(ec);
  impl_->call_async<std::monostate>(
      [&](AsyncCall& c) {
        c.names[0].assign(oldname);
        c.names[1].assign(newname);
        c.frame = fuse::make_rename(olddir, c.names[0], newdir, c.names[1], 0);
      },
      parse_none, Impl::unit(std::move(done)));
}

void Client::statfs(Inode inode, Callback<StatFs> done) {
  impl_->call_async<StatFs>([&](AsyncCall& c) { c.frame = fuse::make_statfs(inode); },
                            parse_value<StatFs>, std::move(done));
}

void Client::fsync(Inode inode, uint64_t fh, bool datasync, DoneCallback done) {
  impl_->call_async<std::monostate>(
      [&](AsyncCall& c) { c.frame = fuse::make_fsync(inode, fh, datasync, false); }, parse_none,
      Impl::unit(std::move(done)));
}

}  // namespace virtiofs
