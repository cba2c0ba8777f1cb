#include "support/loopback_transport.hpp"

#include <poll.h>
#include <unistd.h>

namespace virtiofs::test {

virtio::DeviceConfig LoopbackTransport::read_config() {
  const LoopbackConfig& c = device_->config();
  if (!c.offer_config) return {};
  return virtio::DeviceConfig{c.tag, c.request_queues};
}

std::unique_ptr<virtio::DmaRegion> LoopbackTransport::allocate_memory(size_t bytes,
                                                                      const std::string& name) {
  return std::make_unique<virtio::DmaRegion>(bytes, device_->config().device_base, name);
}

virtio::Transport::LivenessWatch LoopbackTransport::liveness() const {
  return {device_->liveness_fd(), POLLIN};
}

virtio::Transport::LivenessWatch LoopbackTransport::config_watch() const {
  return {device_->config_fd(), POLLIN};
}

std::error_code LoopbackTransport::config_changed() {
  uint64_t count;
  [[maybe_unused]] ssize_t n = read(device_->config_fd(), &count, sizeof(count));
  return device_->needs_reset() ? std::make_error_code(std::errc::io_error) : std::error_code{};
}

}  // namespace virtiofs::test
