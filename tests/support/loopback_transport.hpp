// Test fixture: a virtio::Transport whose device lives in this process (LoopbackDevice), so the
// session runs over real rings, eventfds and a memfd without virtiofsd. The device is shared:
// the session owns the transport, the test keeps the device to step it, fault it or lose it.
#pragma once

#include <memory>

#include "support/loopback_device.hpp"
#include "virtio/transport.hpp"

namespace virtiofs::test {

class LoopbackTransport final : public virtio::Transport {
 public:
  explicit LoopbackTransport(std::shared_ptr<LoopbackDevice> device) : device_(std::move(device)) {}

  uint64_t device_features() override { return device_->config().features; }
  void set_driver_features(uint64_t features) override { device_->set_driver_features(features); }
  std::optional<unsigned> max_queues() override { return device_->num_queues(); }
  virtio::DeviceConfig read_config() override;
  // A memfd with linear device addresses from the device's device_base.
  std::unique_ptr<virtio::DmaRegion> allocate_memory(size_t bytes, const std::string& name) override;
  void register_memory(const virtio::DmaRegion& region) override { device_->register_memory(region); }
  void setup_queue(const virtio::QueueSetup& queue) override { device_->setup_queue(queue); }
  void start() override { device_->start(); }
  int call_fd(unsigned index) const override { return device_->call_fd(index); }
  void notify(unsigned index) override { device_->notify(index); }
  LivenessWatch liveness() const override;
  LivenessWatch config_watch() const override;
  std::error_code config_changed() override;
  void stop() override { device_->stop(); }

 private:
  std::shared_ptr<LoopbackDevice> device_;
};

}  // namespace virtiofs::test
