// An in-process device side of a split virtqueue, following the virtio spec's device rules, for
// unit tests of the driver ring. It can also misbehave on purpose (bad ids, lengths, indices).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "virtio/split_ring.hpp"

namespace virtiofs::test {

// Ring memory for tests: plain host memory where the "device address" is the host address.
struct TestRingMemory {
  explicit TestRingMemory(uint16_t size);
  virtio::RingMemory ring;
  std::vector<std::unique_ptr<std::byte[]>> blocks;
  // An indirect table of `capacity` entries in the same address space.
  virtio::IndirectTable make_table(uint16_t capacity);
};

struct DeviceBuffer {
  std::byte* ptr;
  uint32_t len;
  bool writable;
};

struct DeviceChain {
  uint16_t head;
  bool indirect;
  std::vector<DeviceBuffer> buffers;
};

class DeviceModel {
 public:
  DeviceModel(const virtio::RingMemory& mem, uint16_t size, bool event_idx);

  // Takes the next available chain; walks NEXT links and one level of INDIRECT.
  std::optional<DeviceChain> pop();
  // Puts a used element and publishes it (the caller chooses id and len, including bad ones).
  void push(uint32_t id, uint32_t len);
  // Would the device interrupt the driver for what it published since the last call?
  bool should_interrupt();
  // Tells the driver with EVENT_IDX when to notify (avail_event), or with flags.
  void set_notify_suppressed(bool suppressed);
  void set_avail_event(uint16_t idx);
  // Raw access for fault injection.
  void force_used_idx(uint16_t idx);
  uint16_t last_avail() const { return last_avail_; }

 private:
  virtio::RingMemory mem_;
  uint16_t size_;
  bool event_idx_;
  uint16_t last_avail_ = 0;
  uint16_t used_idx_ = 0;
  uint16_t signalled_used_ = 0;
};

}  // namespace virtiofs::test
