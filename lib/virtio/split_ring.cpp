#include "virtio/split_ring.hpp"

#include <atomic>

namespace virtiofs::virtio {

SplitRing::SplitRing(uint16_t size, const RingMemory& memory, bool event_idx, bool indirect)
    : size_(size), mem_(memory), event_idx_(event_idx), indirect_(indirect), num_free_(size),
      next_(size), heads_(size) {
  for (uint16_t i = 0; i < size; ++i) next_[i] = static_cast<uint16_t>(i + 1);
  mem_.avail->flags.store(0);
  mem_.avail->idx.store(0);
  used_event(mem_.avail, size_).store(0);
  mem_.used->flags.store(0);
  mem_.used->idx.store(0);
  avail_event(mem_.used, size_).store(0);
}

std::error_code SplitRing::add(std::span<const Segment> segments, uint32_t token,
                               const IndirectTable* table) {
  if (broken_) return std::make_error_code(std::errc::io_error);
  const size_t n = segments.size();
  const bool use_indirect = indirect_ && table && n > 1;
  // A chain of ring descriptors must fit the ring. An indirect table may be longer: virtio
  // 1.x says no chain may exceed the queue size, but Linux's driver sends such tables and the
  // device sides we meet (QEMU, libvhost-user/virtiofsd, rust-vmm) take them, so we do as Linux.
  if (n == 0 || (!use_indirect && n > size_)) return std::make_error_code(std::errc::invalid_argument);
  uint32_t writable = 0;
  for (size_t i = 0; i < n; ++i) {
    // virtio §2.7.4.2: device-writable descriptors come after all device-readable ones.
    if (i > 0 && segments[i - 1].device_writable && !segments[i].device_writable)
      return std::make_error_code(std::errc::invalid_argument);
    if (segments[i].device_writable) writable += segments[i].len;
  }
  if (use_indirect && n > table->capacity) return std::make_error_code(std::errc::invalid_argument);
  const uint16_t needed = use_indirect ? 1 : static_cast<uint16_t>(n);
  if (needed > num_free_) return std::make_error_code(std::errc::no_buffer_space);

  const uint16_t head = free_head_;
  if (use_indirect) {
    for (size_t i = 0; i < n; ++i) {
      Desc& d = table->table[i];
      d.addr.store(segments[i].addr);
      d.len.store(segments[i].len);
      d.flags.store(static_cast<uint16_t>((segments[i].device_writable ? kDescFlagWrite : 0) |
                                          (i + 1 < n ? kDescFlagNext : 0)));
      d.next.store(static_cast<uint16_t>(i + 1 < n ? i + 1 : 0));
    }
    Desc& d = mem_.desc[head];
    d.addr.store(table->addr);
    d.len.store(static_cast<uint32_t>(n * sizeof(Desc)));
    d.flags.store(kDescFlagIndirect);
    d.next.store(0);
    free_head_ = next_[head];
  } else {
    uint16_t i = head;
    for (size_t k = 0; k < n; ++k) {
      Desc& d = mem_.desc[i];
      d.addr.store(segments[k].addr);
      d.len.store(segments[k].len);
      d.flags.store(static_cast<uint16_t>((segments[k].device_writable ? kDescFlagWrite : 0) |
                                          (k + 1 < n ? kDescFlagNext : 0)));
      d.next.store(k + 1 < n ? next_[i] : 0);
      i = next_[i];
    }
    free_head_ = i;
  }
  num_free_ = static_cast<uint16_t>(num_free_ - needed);
  heads_[head] = HeadState{token, writable, needed};
  mem_.avail->ring[avail_idx_ & (size_ - 1)].store(head);
  ++avail_idx_;
  return {};
}

bool SplitRing::kick_prepare() {
  // The device may read descriptors and ring entries as soon as it sees the new idx: they must be
  // visible first.
  std::atomic_thread_fence(std::memory_order_release);
  mem_.avail->idx.store(avail_idx_);
  // The idx store must be visible before we read the device's notification suppression, or the
  // device could go idle having missed the new entries while we skip the kick.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const uint16_t old = avail_published_;
  avail_published_ = avail_idx_;
  if (old == avail_idx_) return false;
  if (event_idx_) return need_event(avail_event(mem_.used, size_).load(), avail_idx_, old);
  return (mem_.used->flags.load() & kUsedFlagNoNotify) == 0;
}

void SplitRing::free_chain(uint16_t head) {
  HeadState& h = heads_[head];
  uint16_t last = head;
  for (uint16_t k = 1; k < h.descriptors; ++k) last = next_[last];
  next_[last] = free_head_;
  free_head_ = head;
  num_free_ = static_cast<uint16_t>(num_free_ + h.descriptors);
  h.descriptors = 0;
}

bool SplitRing::has_used() const { return mem_.used->idx.load() != last_used_; }

size_t SplitRing::collect_used(std::span<UsedElement> out, std::error_code& ec) {
  if (broken_) {
    ec = std::make_error_code(std::errc::io_error);
    return 0;
  }
  const uint16_t used_idx = mem_.used->idx.load();
  // Entries are read only after the idx that covers them (pairs with the device's write barrier).
  std::atomic_thread_fence(std::memory_order_acquire);
  const uint16_t in_flight = static_cast<uint16_t>(avail_idx_ - last_used_);
  if (static_cast<uint16_t>(used_idx - last_used_) > in_flight) {
    broken_ = true;
    broken_why_ = "used index moved " + std::to_string(static_cast<uint16_t>(used_idx - last_used_)) +
                  " entries with " + std::to_string(in_flight) + " in flight";
    ec = std::make_error_code(std::errc::io_error);
    return 0;
  }
  size_t count = 0;
  while (last_used_ != used_idx && count < out.size()) {
    const UsedElem& e = mem_.used->ring[last_used_ & (size_ - 1)];
    const uint32_t id = e.id.load();
    const uint32_t len = e.len.load();
    if (id >= size_ || heads_[id].descriptors == 0 || len > heads_[id].writable_bytes) {
      broken_ = true;
      broken_why_ = id >= size_ ? "used id " + std::to_string(id) + " beyond the ring of " + std::to_string(size_)
                    : heads_[id].descriptors == 0
                        ? "used id " + std::to_string(id) + " not in flight"
                        : "used length " + std::to_string(len) + " beyond the chain's " +
                              std::to_string(heads_[id].writable_bytes) + " writable bytes";
      ec = std::make_error_code(std::errc::io_error);
      return count;
    }
    out[count++] = UsedElement{heads_[id].token, len};
    free_chain(static_cast<uint16_t>(id));
    ++last_used_;
  }
  if (event_idx_ && interrupts_enabled_) {
    // Ask for an interrupt at the next entry; the store must land before a later has_used().
    used_event(mem_.avail, size_).store(last_used_);
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  return count;
}

bool SplitRing::enable_interrupts() {
  interrupts_enabled_ = true;
  if (event_idx_) {
    used_event(mem_.avail, size_).store(last_used_);
  } else {
    mem_.avail->flags.store(0);
  }
  // Our request for an interrupt must be visible before we re-check the used idx: otherwise an
  // entry published in between would neither be seen now nor signalled later.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return has_used();
}

void SplitRing::disable_interrupts() {
  interrupts_enabled_ = false;
  if (event_idx_) {
    // Half the index space ahead: no used idx the device can reach (at most size_ past ours)
    // crosses it, so it signals nothing until enable_interrupts() (the flag is only a hint).
    used_event(mem_.avail, size_).store(static_cast<uint16_t>(last_used_ + 0x8000u));
  } else {
    mem_.avail->flags.store(kAvailFlagNoInterrupt);
  }
}

}  // namespace virtiofs::virtio
