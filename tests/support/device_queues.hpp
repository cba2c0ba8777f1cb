// The seam between a test device's queues and what serves them: the device hands available
// chains to a ChainHandler (FsServer), which answers through DeviceQueues. Implemented by the
// vhost-user test backend (a separate process) and by the in-process loopback device.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "support/device_model.hpp"

namespace virtiofs::test {

class ChainHandler {
 public:
  virtual ~ChainHandler() = default;
  // Runs with every chain of queue `queue` that was taken at once (on the queue's device
  // thread, or on the test's thread when the device is stepped).
  virtual void on_chains(unsigned queue, std::vector<DeviceChain>& chains) = 0;
};

class DeviceQueues {
 public:
  using Used = std::vector<std::pair<uint32_t, uint32_t>>;  // (id, len)
  virtual ~DeviceQueues() = default;

  // Puts a used element (any id and len: faults included) and interrupts the driver if it
  // asked for one. Safe from any thread.
  virtual void complete(unsigned queue, uint32_t id, uint32_t len) = 0;
  // Several at once, one interrupt decision.
  virtual void complete_all(unsigned queue, const Used& used) = 0;
  // Moves queue's used index `by` entries ahead without writing them (a fault).
  virtual void jump_used_idx(unsigned queue, uint16_t by) = 0;
  // The device dies at once, as a crashed backend: the driver sees it lost.
  virtual void lose() = 0;
  virtual unsigned num_queues() const = 0;
  virtual uint16_t queue_size(unsigned queue) const = 0;
};

}  // namespace virtiofs::test
