// Client: connecting, and the synchronous inode operations (each an op builder paired with a
// reply parser, waited for on a stack SyncCall). The async twins are in client_async.cpp.
#include "virtiofs/client.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <mutex>
#include <utility>
#include <stop_token>
#include <variant>

#include "client/buffer_pool.hpp"
#include "client/client_impl.hpp"
#include "client/connector.hpp"
#include "fs/session.hpp"
#include "fuse/dirent.hpp"
#include "fuse/init.hpp"
#include "fuse/ops.hpp"
#include "vfio/vfio_transport.hpp"
#include "vhost_user/frontend.hpp"
#include "virtio/features.hpp"

namespace virtiofs {

namespace {
std::error_code einval() { return std::make_error_code(std::errc::invalid_argument); }
}  // namespace

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() { close(); }

std::unique_ptr<Client> Client::connect(const Options& options) {
  if (options.socket_path.empty() == options.pci_device.empty())
    throw std::system_error(einval(), "give exactly one device: Options::socket_path or Options::pci_device");
  std::unique_ptr<virtio::Transport> transport;
  if (!options.pci_device.empty())
    transport = std::make_unique<vfio::VfioTransport>(options.pci_device);
  else
    transport = std::make_unique<vhost_user::Frontend>(options.socket_path);
  return client::Connector::over(std::move(transport), options);
}

std::unique_ptr<Client> client::Connector::over(std::unique_ptr<virtio::Transport> transport,
                                                const Options& options) {
  if (options.tag.size() > virtio::kTagSize)
    throw std::system_error(einval(), "tag '" + options.tag + "' is longer than 36 bytes");
  auto config = transport->read_config();
  std::string tag = options.tag;
  if (config.tag) {
    if (!tag.empty() && *config.tag != tag)
      throw std::system_error(std::make_error_code(std::errc::no_such_device),
                              "device tag is '" + *config.tag + "', not '" + tag + "'");
    tag = *config.tag;
  }
  const unsigned queues = fs::request_queue_count(options.num_request_queues, *transport, config);
  fs::SessionOptions so;
  so.queue_size = options.queue_size;
  so.num_request_queues = queues;
  so.max_transfer = options.max_transfer;
  so.poll_us = options.poll_us;
  so.app_reaps_completions = options.app_reaps_completions;
  so.app_memory_bytes = options.registered_memory_bytes;
  auto impl = std::make_unique<Client::Impl>();
  impl->session = std::make_unique<fs::Session>(std::move(transport), so);
  impl->session->init(fuse::kLibraryInitFlags, so.max_transfer);
  impl->buffers = std::make_unique<client::BufferPool>(impl->session->app_memory());
  impl->tag = tag;
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

const Negotiated& Client::negotiated() const { return impl_->session->negotiated(); }
const std::string& Client::tag() const { return impl_->tag; }
void Client::close() { impl_->session->shutdown(); }
std::error_code Client::failure() const { return impl_->session->failure(); }
Client::Stats Client::stats() const {
  auto s = impl_->session->stats();
  return Stats{s.requests,   s.notifications, s.forgets,        s.waits,
               s.interrupts, s.polled,        s.interrupts_sent, s.zero_copy_bytes,
               s.callers_woken};
}

IoBuffer Client::allocate_buffer(size_t bytes) {
  auto piece = impl_->buffers->take(bytes);
  if (piece.empty())
    throw std::system_error(std::make_error_code(std::errc::not_enough_memory),
                            "no " + std::to_string(bytes) +
                                " bytes left in the registered memory (Options::registered_memory_bytes)");
  return IoBuffer(impl_->buffers.get(), piece);
}

IoBuffer::~IoBuffer() {
  if (pool_) pool_->give(data_);
}
IoBuffer::IoBuffer(IoBuffer&& other) noexcept
    : pool_(std::exchange(other.pool_, nullptr)), data_(std::exchange(other.data_, {})) {}
IoBuffer& IoBuffer::operator=(IoBuffer&& other) noexcept {
  if (this != &other) {
    if (pool_) pool_->give(data_);
    pool_ = std::exchange(other.pool_, nullptr);
    data_ = std::exchange(other.data_, {});
  }
  return *this;
}
unsigned Client::num_request_queues() const { return impl_->session->num_request_queues(); }

// ---- synchronous inode operations ----

#define VIRTIOFS_CHECK_NAME(n) \
  if (auto ec = fuse::check_name(n)) return ec

std::error_code Client::lookup(Inode parent, std::string_view name, Entry& out) {
  VIRTIOFS_CHECK_NAME(name);
  return impl_->call(fuse::make_lookup(parent, name), parse_value<Entry>, out);
}

void Client::forget(Inode inode, uint64_t nlookup) {
  if (inode != kRootInode) impl_->session->forget(inode, nlookup);
}

std::error_code Client::getattr(Inode inode, Attr& out) {
  return impl_->call(fuse::make_getattr(inode, nullptr), parse_value<Attr>, out);
}

std::error_code Client::setattr(Inode inode, const SetAttr& attr, Attr& out) {
  return impl_->call(fuse::make_setattr(inode, attr), parse_value<Attr>, out);
}

std::error_code Client::readlink(Inode inode, std::string& target) {
  target.resize(fuse::kMaxPath);
  size_t n = 0;
  auto ec = impl_->call(fuse::make_readlink(inode, std::as_writable_bytes(std::span(target))),
                        parse_data, n);
  target.resize(ec ? 0 : n);
  return ec;
}

std::error_code Client::symlink(Inode parent, std::string_view name, std::string_view target,
                                Entry& out) {
  VIRTIOFS_CHECK_NAME(name);
  if (target.empty() || target.size() >= fuse::kMaxPath || target.find('\0') != target.npos)
    return einval();
  return impl_->call(fuse::make_symlink(parent, name, target), parse_value<Entry>, out);
}

std::error_code Client::mknod(Inode parent, std::string_view name, uint32_t mode, uint32_t rdev,
                              Entry& out) {
  VIRTIOFS_CHECK_NAME(name);
  return impl_->call(fuse::make_mknod(parent, name, mode, rdev, 0), parse_value<Entry>, out);
}

std::error_code Client::mkdir(Inode parent, std::string_view name, uint32_t mode, Entry& out) {
  VIRTIOFS_CHECK_NAME(name);
  return impl_->call(fuse::make_mkdir(parent, name, mode, 0), parse_value<Entry>, out);
}

std::error_code Client::unlink(Inode parent, std::string_view name) {
  VIRTIOFS_CHECK_NAME(name);
  return impl_->call(fuse::make_unlink(parent, name));
}

std::error_code Client::rmdir(Inode parent, std::string_view name) {
  VIRTIOFS_CHECK_NAME(name);
  return impl_->call(fuse::make_rmdir(parent, name));
}

std::error_code Client::rename(Inode olddir, std::string_view oldname, Inode newdir,
                               std::string_view newname, uint32_t flags) {
  VIRTIOFS_CHECK_NAME(oldname);
  VIRTIOFS_CHECK_NAME(newname);
  return impl_->call(fuse::make_rename(olddir, oldname, newdir, newname, flags));
}

std::error_code Client::link(Inode inode, Inode newparent, std::string_view newname, Entry& out) {
  VIRTIOFS_CHECK_NAME(newname);
  return impl_->call(fuse::make_link(inode, newparent, newname), parse_value<Entry>, out);
}

std::error_code Client::open(Inode inode, uint32_t flags, OpenFile& out) {
  return impl_->call(fuse::make_open(inode, flags, false), parse_value<OpenFile>, out);
}

std::error_code Client::create(Inode parent, std::string_view name, uint32_t flags, uint32_t mode,
                               Created& out) {
  VIRTIOFS_CHECK_NAME(name);
  return impl_->call(fuse::make_create(parent, name, flags, mode, 0), parse_value<Created>, out);
}

std::error_code Client::read(Inode inode, uint64_t fh, uint64_t offset, std::span<std::byte> buf,
                             size_t& done, std::stop_token stop) {
  buf = buf.first(std::min<size_t>(buf.size(), negotiated().max_read));
  return impl_->call(fuse::make_read(inode, fh, offset, buf, false, false), parse_data, done, stop);
}

std::error_code Client::write(Inode inode, uint64_t fh, uint64_t offset,
                              std::span<const std::byte> data, size_t& done, std::stop_token stop) {
  data = data.first(std::min<size_t>(data.size(), negotiated().max_write));
  return impl_->call(fuse::make_write(inode, fh, offset, data), parse_written, done, stop);
}

std::error_code Client::statfs(Inode inode, StatFs& out) {
  return impl_->call(fuse::make_statfs(inode), parse_value<StatFs>, out);
}

std::error_code Client::release(Inode inode, uint64_t fh, uint32_t flags) {
  return impl_->call(fuse::make_release(inode, fh, flags, false));
}

std::error_code Client::fsync(Inode inode, uint64_t fh, bool datasync) {
  return impl_->call(fuse::make_fsync(inode, fh, datasync, false));
}

std::error_code Client::flush(Inode inode, uint64_t fh, uint64_t lock_owner) {
  return impl_->call(fuse::make_flush(inode, fh, lock_owner));
}

std::error_code Client::setxattr(Inode inode, std::string_view name,
                                 std::span<const std::byte> value, uint32_t flags) {
  if (name.empty() || name.size() > 255) return einval();
  return impl_->call(fuse::make_setxattr(inode, name, value, flags));
}

namespace {
std::error_code parse_xattr(const fuse::Reply& r, size_t& out) {
  uint64_t n = 0;
  auto ec = fuse::parse_count(r, fuse::Count::kXattrSize, n);
  out = n;
  return ec;
}
}  // namespace

std::error_code Client::getxattr(Inode inode, std::string_view name, std::span<std::byte> value,
                                 size_t& size) {
  if (name.empty() || name.size() > 255) return einval();
  return impl_->call(fuse::make_getxattr(inode, name, value), parse_xattr, size);
}

std::error_code Client::listxattr(Inode inode, std::span<std::byte> list, size_t& size) {
  return impl_->call(fuse::make_listxattr(inode, list), parse_xattr, size);
}

std::error_code Client::removexattr(Inode inode, std::string_view name) {
  if (name.empty() || name.size() > 255) return einval();
  return impl_->call(fuse::make_removexattr(inode, name));
}

std::error_code Client::opendir(Inode inode, OpenFile& out) {
  return impl_->call(fuse::make_open(inode, O_RDONLY | O_DIRECTORY, true), parse_value<OpenFile>,
                     out);
}

namespace {
constexpr size_t kDirBuffer = 64 * 1024;
}

std::error_code Client::readdir(Inode inode, uint64_t fh, uint64_t offset,
                                std::vector<DirEntry>& out) {
  out.clear();
  std::vector<std::byte> buf(kDirBuffer);
  size_t n = 0;
  if (auto ec = impl_->call(fuse::make_read(inode, fh, offset, buf, true, false), parse_data, n))
    return ec;
  auto ec = fuse::parse_dirents(std::span(buf).first(n), false, [&](const fuse::DirentView& d) {
    out.push_back(DirEntry{d.ino, d.offset, d.type, std::string(d.name)});
    return true;
  });
  if (ec) out.clear();
  return impl_->checked(ec);
}

std::error_code Client::readdirplus(Inode inode, uint64_t fh, uint64_t offset,
                                    std::vector<std::pair<DirEntry, Entry>>& out) {
  out.clear();
  std::vector<std::byte> buf(kDirBuffer);
  size_t n = 0;
  if (auto ec = impl_->call(fuse::make_read(inode, fh, offset, buf, true, true), parse_data, n))
    return ec;
  auto ec = fuse::parse_dirents(std::span(buf).first(n), true, [&](const fuse::DirentView& d) {
    out.emplace_back(DirEntry{d.ino, d.offset, d.type, std::string(d.name)}, *d.entry);
    return true;
  });
  if (ec) {
    // The references the device handed out before the bad record must not leak.
    for (auto& [d, e] : out) forget(e.inode, 1);
    out.clear();
  }
  return impl_->checked(ec);
}

std::error_code Client::releasedir(Inode inode, uint64_t fh) {
  return impl_->call(fuse::make_release(inode, fh, 0, true));
}

std::error_code Client::fsyncdir(Inode inode, uint64_t fh, bool datasync) {
  return impl_->call(fuse::make_fsync(inode, fh, datasync, true));
}

std::error_code Client::access(Inode inode, uint32_t mask) {
  return impl_->call(fuse::make_access(inode, mask));
}

std::error_code Client::fallocate(Inode inode, uint64_t fh, uint64_t offset, uint64_t length,
                                  uint32_t mode) {
  return impl_->call(fuse::make_fallocate(inode, fh, offset, length, mode));
}

namespace {
std::error_code parse_u64(const fuse::Reply& r, uint64_t& out, fuse::Count kind) {
  return fuse::parse_count(r, kind, out);
}
}  // namespace

std::error_code Client::lseek(Inode inode, uint64_t fh, uint64_t offset, uint32_t whence,
                              uint64_t& result) {
  return impl_->call<uint64_t>(
      fuse::make_lseek(inode, fh, offset, whence),
      [](const fuse::Reply& r, uint64_t& o) { return parse_u64(r, o, fuse::Count::kSeekOffset); },
      result);
}

std::error_code Client::copy_file_range(Inode in_inode, uint64_t in_fh, uint64_t in_off,
                                        Inode out_inode, uint64_t out_fh, uint64_t out_off,
                                        uint64_t len, uint64_t& copied) {
  return impl_->call<uint64_t>(
      fuse::make_copy_file_range(in_inode, in_fh, in_off, out_inode, out_fh, out_off, len),
      [](const fuse::Reply& r, uint64_t& o) { return parse_u64(r, o, fuse::Count::kWritten); },
      copied);
}

std::error_code Client::getlk(Inode inode, uint64_t fh, uint64_t owner, const Lock& lock,
                              Lock& out) {
  return impl_->call(fuse::make_getlk(inode, fh, owner, lock), parse_value<Lock>, out);
}

std::error_code Client::setlk(Inode inode, uint64_t fh, uint64_t owner, const Lock& lock,
                              bool wait, std::stop_token stop) {
  return impl_->call(fuse::make_setlk(inode, fh, owner, lock, wait), stop);
}

}  // namespace virtiofs
