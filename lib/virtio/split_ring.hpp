// Driver side of a split virtqueue. Not thread-safe: one owner (the queue's lock holder) at a time.
//
// Follows Linux's virtio_ring.c: private shadow indices (shared memory is never read back for
// anything the driver wrote), a free list kept in private per-descriptor state, a token per head,
// kick_prepare separate from the notify, and every used element the device writes is validated;
// the first bad one latches the ring broken.
#pragma once

#include <cstdint>
#include <span>
#include <system_error>
#include <string>
#include <vector>

#include "virtio/split_ring_layout.hpp"

namespace virtiofs::virtio {

struct Segment {
  uint64_t addr;  // as the device sees it
  uint32_t len;
  bool device_writable;
};

// A per-request indirect descriptor table in device-visible memory.
struct IndirectTable {
  Desc* table;
  uint64_t addr;
  uint16_t capacity;
};

struct UsedElement {
  uint32_t token;  // what add() was given
  uint32_t len;    // bytes the device wrote, validated against the chain's writable size
};

class SplitRing {
 public:
  SplitRing(uint16_t size, const RingMemory& memory, bool event_idx, bool indirect);

  uint16_t size() const { return size_; }
  uint16_t num_free() const { return num_free_; }
  bool broken() const { return broken_; }
  // What the device did that broke the ring (empty while it is not broken).
  const std::string& broken_why() const { return broken_why_; }
  bool event_idx() const { return event_idx_; }
  bool has_indirect() const { return indirect_; }

  // Descriptors a request with n segments takes from the table.
  uint16_t descriptors_needed(size_t n, bool has_table) const {
    return (indirect_ && has_table && n > 1) ? 1 : static_cast<uint16_t>(n);
  }

  // Adds a chain (readable segments first, then writable ones) without publishing it.
  // Errors: no_buffer_space (wait for completions), invalid_argument (bad chain), io_error (broken).
  std::error_code add(std::span<const Segment> segments, uint32_t token, const IndirectTable* table);

  // Publishes every added chain to the device; true when the device wants a notification.
  bool kick_prepare();

  // Takes up to out.size() used elements, freeing their descriptors. A device that reports an id
  // that is not in flight, a length beyond the chain's writable bytes, or more used entries than
  // the ring holds marks the ring broken and sets ec (io_error).
  size_t collect_used(std::span<UsedElement> out, std::error_code& ec);

  bool has_used() const;
  // Asks for an interrupt at the next used element. Returns true if some are already pending,
  // so the caller must poll again (closes the lost-wake-up window).
  bool enable_interrupts();
  void disable_interrupts();

 private:
  struct HeadState {
    uint32_t token = 0;
    uint32_t writable_bytes = 0;
    uint16_t descriptors = 0;  // 0 = not in flight
  };

  void free_chain(uint16_t head);

  uint16_t size_;
  RingMemory mem_;
  bool event_idx_;
  bool indirect_;
  bool broken_ = false;
  std::string broken_why_;
  bool interrupts_enabled_ = true;

  uint16_t free_head_ = 0;
  uint16_t num_free_;
  uint16_t avail_idx_ = 0;        // next avail index to fill (shadow of avail->idx)
  uint16_t avail_published_ = 0;  // avail->idx as the device last saw it at a kick_prepare
  uint16_t last_used_ = 0;        // next used index to read
  std::vector<uint16_t> next_;    // free-list / chain links, private
  std::vector<HeadState> heads_;
};

}  // namespace virtiofs::virtio
