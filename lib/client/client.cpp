// Client: connecting, buffers, statistics. The inode operations are in client_ops.cpp.
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
  so.app_memory_bytes = options.registered_memory_bytes;
  auto impl = std::make_unique<Client::Impl>();
  impl->session = std::make_unique<fs::Session>(std::move(transport), so);
  impl->session->set_dropped_reply_handler(
      [runner = impl.get()](const fs::DroppedReply& d) { runner->give_back_dropped(d); });
  impl->session->init(fuse::kLibraryInitFlags, so.max_transfer);
  impl->buffers = std::make_unique<client::BufferPool>(impl->session->app_memory());
  impl->tag = tag;
  impl->interrupts = options.interrupts;
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

const Negotiated& Client::negotiated() const { return impl_->session->negotiated(); }
const std::string& Client::tag() const { return impl_->tag; }
void Client::close() { impl_->session->shutdown(); }
std::error_code Client::failure() const { return impl_->session->failure(); }
Client::Stats Client::stats() const { return impl_->session->stats(); }

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

void Client::forget(Inode inode, uint64_t nlookup) {
  if (inode != kRootInode) impl_->session->forget(inode, nlookup);
}

}  // namespace virtiofs
