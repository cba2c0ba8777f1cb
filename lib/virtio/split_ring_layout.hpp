// Memory layout of a split virtqueue (virtio 1.x spec §2.7). Everything here is read or written by
// the device, so every field is little-endian and nothing private lives in it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "virtio/le.hpp"

namespace virtiofs::virtio {

inline constexpr uint16_t kDescFlagNext = 1;
inline constexpr uint16_t kDescFlagWrite = 2;
inline constexpr uint16_t kDescFlagIndirect = 4;
inline constexpr uint16_t kAvailFlagNoInterrupt = 1;
inline constexpr uint16_t kUsedFlagNoNotify = 1;
inline constexpr uint32_t kMaxQueueSize = 32768;

struct Desc {
  le64 addr;
  le32 len;
  le16 flags;
  le16 next;
};
static_assert(sizeof(Desc) == 16);

struct AvailRing {
  le16 flags;
  le16 idx;
  le16 ring[];  // [size], then le16 used_event
};

struct UsedElem {
  le32 id;
  le32 len;
};

struct UsedRing {
  le16 flags;
  le16 idx;
  UsedElem ring[];  // [size], then le16 avail_event
};

constexpr size_t desc_table_bytes(uint32_t size) { return sizeof(Desc) * size; }
constexpr size_t avail_ring_bytes(uint32_t size) { return 4 + 2 * size + 2; }
constexpr size_t used_ring_bytes(uint32_t size) { return 4 + sizeof(UsedElem) * size + 2; }
inline constexpr size_t kDescAlign = 16;
inline constexpr size_t kAvailAlign = 2;
inline constexpr size_t kUsedAlign = 4;

inline le16& used_event(AvailRing* avail, uint32_t size) { return avail->ring[size]; }
inline le16& avail_event(UsedRing* used, uint32_t size) {
  return *reinterpret_cast<le16*>(reinterpret_cast<std::byte*>(used) + 4 + sizeof(UsedElem) * size);
}

// virtio spec §2.7.10: should the side that published new_idx (last told at old_idx) notify a peer
// that asked to be woken once event_idx has been passed?
constexpr bool need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx) {
  return static_cast<uint16_t>(new_idx - event_idx - 1) < static_cast<uint16_t>(new_idx - old_idx);
}

constexpr bool is_valid_queue_size(uint32_t size) {
  return size >= 1 && size <= kMaxQueueSize && (size & (size - 1)) == 0;
}

// Where the three parts of one ring live: host pointers for the driver, addresses for the device.
struct RingMemory {
  Desc* desc = nullptr;
  AvailRing* avail = nullptr;
  UsedRing* used = nullptr;
  uint64_t desc_addr = 0;
  uint64_t avail_addr = 0;
  uint64_t used_addr = 0;
};

}  // namespace virtiofs::virtio
