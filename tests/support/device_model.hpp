// An in-process device side of a split virtqueue, following the virtio spec's device rules, for
// unit tests of the driver ring. It can also misbehave on purpose (bad ids, lengths, indices).
#pragma once

#include <cstdint>
#include <functional>
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

// Turns a device address of `len` bytes into a pointer, or nullptr when it lies outside the
// memory the device may touch.
using Translate = std::function<std::byte*(uint64_t addr, uint64_t len)>;

class DeviceModel {
 public:
  // Without a translator, device addresses are host addresses (in-process tests).
  DeviceModel(const virtio::RingMemory& mem, uint16_t size, bool event_idx,
              Translate translate = {});

  // Takes the next available chain; walks NEXT links and one level of INDIRECT. Throws
  // std::runtime_error when the driver published something a device must refuse.
  std::optional<DeviceChain> pop();
  // Would pop() find a chain? (Reads the driver's avail index.)
  bool has_available() const;
  // Puts a used element and publishes it (the caller chooses id and len, including bad ones).
  void push(uint32_t id, uint32_t len);
  // Would the device interrupt the driver for what it published since the last call?
  bool should_interrupt();
  // Would the driver be interrupted for one more used element now? (Reads used_event or the
  // NO_INTERRUPT flag; changes nothing.)
  bool wants_interrupt() const;
  // Tells the driver with EVENT_IDX when to notify (avail_event), or with flags.
  void set_notify_suppressed(bool suppressed);
  void set_avail_event(uint16_t idx);
  // Raw access for fault injection.
  void force_used_idx(uint16_t idx);
  uint16_t last_avail() const { return last_avail_; }
  uint16_t used_idx() const { return used_idx_; }
  uint16_t size() const { return size_; }

 private:
  std::byte* at(uint64_t addr, uint64_t len) const;

  virtio::RingMemory mem_;
  uint16_t size_;
  bool event_idx_;
  Translate translate_;
  uint16_t last_avail_ = 0;
  uint16_t used_idx_ = 0;
  uint16_t signalled_used_ = 0;
};

}  // namespace virtiofs::test
