// The one seam between "virtio" and "how the device is reached" (vhost-user, VFIO). Everything
// above it is transport-agnostic. Setup calls throw std::system_error with a readable message.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include "virtio/dma_region.hpp"
#include "virtio/split_ring_layout.hpp"

namespace virtiofs::virtio {

struct DeviceConfig {
  std::optional<std::string> tag;
  std::optional<uint32_t> num_request_queues;
};

struct QueueSetup {
  unsigned index;
  uint16_t size;
  RingMemory memory;
};

class Transport {
 public:
  virtual ~Transport() = default;

  virtual uint64_t device_features() = 0;
  // Features the driver accepts (a subset of device_features()).
  virtual void set_driver_features(uint64_t features) = 0;
  // Total virtqueues the device has (hiprio + request queues), when the transport can tell.
  virtual std::optional<unsigned> max_queues() = 0;
  virtual DeviceConfig read_config() = 0;
  // Memory of at least `bytes` the device can reach, translated the way this transport needs
  // (called after set_driver_features, which may decide the addressing mode).
  virtual std::unique_ptr<DmaRegion> allocate_memory(size_t bytes, const std::string& name) = 0;
  virtual void register_memory(const DmaRegion& region) = 0;
  // Sets up and enables one queue. Returns nothing; call_fd() gives its completion eventfd.
  virtual void setup_queue(const QueueSetup& queue) = 0;
  // All queues set up: the device may start processing.
  virtual void start() = 0;
  // Eventfd signalled when queue `index` has used buffers (interrupts enabled). Queues may share
  // one fd when the device has fewer interrupt vectors than queues.
  virtual int call_fd(unsigned index) const = 0;
  // After the call fd fired and was read: re-enables a level-triggered interrupt (INTx).
  virtual void rearm_interrupt(unsigned /*index*/) {}
  // Tells the device queue `index` has new available buffers. Safe from any thread.
  virtual void notify(unsigned index) = 0;
  // An fd that reports `events` (e.g. POLLRDHUP, POLLIN) when the device is lost (fd -1: none).
  struct LivenessWatch {
    int fd = -1;
    short events = 0;
  };
  virtual LivenessWatch liveness() const = 0;
  // The device's configuration-change interrupt (virtio §4.1.5.3), which is also how it says it
  // set DEVICE_NEEDS_RESET: an fd that becomes readable when the device may have changed its
  // status or config (fd -1: the transport has none). It is never a queue's call fd.
  virtual LivenessWatch config_watch() const { return {}; }
  // After the config watch fired: takes the signal and reads the device status. Returns the error
  // the session must fail with (EIO: the device set DEVICE_NEEDS_RESET, its queues are no longer
  // served), or none for a mere config change.
  virtual std::error_code config_changed() { return {}; }
  // Stops the device's queues; safe to call once after a loss too.
  virtual void stop() = 0;
};

}  // namespace virtiofs::virtio
