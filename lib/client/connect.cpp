// Client::connect and Connector::over: opening the device and starting a Client on it.
#include <memory>
#include <system_error>

#include "client/buffer_pool.hpp"
#include "client/client_impl.hpp"
#include "client/connector.hpp"
#include "fs/session.hpp"
#include "fuse/init.hpp"
#include "vfio/vfio_transport.hpp"
#include "vhost_user/frontend.hpp"
#include "virtio/features.hpp"
#include "virtiofs/client.hpp"

namespace virtiofs {

namespace {
std::error_code einval() { return std::make_error_code(std::errc::invalid_argument); }
}  // namespace

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
  impl->session->init(fuse::kLibraryInitFlags, so.max_transfer);
  impl->buffers = std::make_unique<client::BufferPool>(impl->session->app_memory());
  impl->tag = tag;
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

}  // namespace virtiofs
