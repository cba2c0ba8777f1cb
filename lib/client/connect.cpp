// Client::connect and Connector: opening the device (open_device.hpp) and starting a Client on
// it.
#include <memory>
#include <system_error>

#include "client/buffer_pool.hpp"
#include "client/client_impl.hpp"
#include "client/connector.hpp"
#include "client/open_device.hpp"
#include "fs/session.hpp"
#include "fuse/init.hpp"
#include "virtiofs/client.hpp"

namespace virtiofs {

std::unique_ptr<Client> Client::connect(const Options& options) {
  return client::Connector::start(client::open_device(options), options);
}

std::unique_ptr<Client> client::Connector::over(std::unique_ptr<virtio::Transport> transport,
                                                const Options& options) {
  return start(client::settle_device(std::move(transport), options), options);
}

std::unique_ptr<Client> client::Connector::start(OpenedDevice device, const Options& options) {
  auto impl = std::make_unique<Client::Impl>();
  const uint32_t max_transfer = device.session.max_transfer;
  impl->session = std::make_unique<fs::Session>(std::move(device.transport), device.session);
  impl->session->set_dropped_reply_handler(
      [runner = impl.get()](const fs::DroppedReply& d) { runner->give_back_dropped(d); });
  impl->interrupts = options.interrupts;
  impl->file_releases.configure(options.app_reaps_completions, device.session.device_timeout);
  impl->session->init(fuse::kLibraryInitFlags, max_transfer);
  impl->buffers = std::make_shared<client::BufferPool>(impl->session->app_memory(),
                                                      impl->session->memory_keepalive());
  impl->ledger.start(client::lookup_accounting_on(options.lookup_accounting));
  impl->cache.start(options.path_cache_entries,
                    [runner = impl.get()](Inode inode, uint64_t n) { runner->forget_ref(inode, n, true); });
  impl->tag = std::move(device.tag);
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

}  // namespace virtiofs
