#include "support/loopback_transport.hpp"

#include <poll.h>

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

}  // namespace virtiofs::test
