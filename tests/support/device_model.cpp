#include "support/device_model.hpp"

#include <atomic>
#include <cstring>
#include <stdexcept>

namespace virtiofs::test {

using namespace virtio;

namespace {
std::byte* alloc(std::vector<std::unique_ptr<std::byte[]>>& blocks, size_t n) {
  blocks.push_back(std::make_unique<std::byte[]>(n + 64));
  auto addr = reinterpret_cast<uintptr_t>(blocks.back().get());
  addr = (addr + 63) & ~uintptr_t{63};
  std::memset(reinterpret_cast<void*>(addr), 0xAB, n);  // garbage: the driver must initialise
  return reinterpret_cast<std::byte*>(addr);
}
}  // namespace

TestRingMemory::TestRingMemory(uint16_t size) {
  ring.desc = reinterpret_cast<Desc*>(alloc(blocks, desc_table_bytes(size)));
  ring.avail = reinterpret_cast<AvailRing*>(alloc(blocks, avail_ring_bytes(size)));
  ring.used = reinterpret_cast<UsedRing*>(alloc(blocks, used_ring_bytes(size)));
  ring.desc_addr = reinterpret_cast<uint64_t>(ring.desc);
  ring.avail_addr = reinterpret_cast<uint64_t>(ring.avail);
  ring.used_addr = reinterpret_cast<uint64_t>(ring.used);
}

IndirectTable TestRingMemory::make_table(uint16_t capacity) {
  auto* t = reinterpret_cast<Desc*>(alloc(blocks, capacity * sizeof(Desc)));
  return IndirectTable{t, reinterpret_cast<uint64_t>(t), capacity};
}

DeviceModel::DeviceModel(const RingMemory& mem, uint16_t size, bool event_idx, Translate translate)
    : mem_(mem), size_(size), event_idx_(event_idx), translate_(std::move(translate)) {}

std::byte* DeviceModel::at(uint64_t addr, uint64_t len) const {
  if (!translate_) return reinterpret_cast<std::byte*>(addr);
  std::byte* p = translate_(addr, len);
  if (!p) throw std::runtime_error("driver gave an address outside the memory table");
  return p;
}

bool DeviceModel::has_available() const {
  return mem_.avail->idx.load() != last_avail_;
}

std::optional<DeviceChain> DeviceModel::pop() {
  const uint16_t avail_idx = mem_.avail->idx.load();
  std::atomic_thread_fence(std::memory_order_acquire);
  if (avail_idx == last_avail_) return std::nullopt;
  DeviceChain chain;
  chain.head = mem_.avail->ring[last_avail_ % size_].load();
  chain.indirect = false;
  ++last_avail_;
  if (event_idx_) avail_event(mem_.used, size_).store(last_avail_);
  if (chain.head >= size_) throw std::runtime_error("driver published a bad head");
  const Desc* table = mem_.desc;
  uint32_t table_size = size_;
  uint16_t i = chain.head;
  if (mem_.desc[i].flags.load() & kDescFlagIndirect) {
    chain.indirect = true;
    table_size = mem_.desc[i].len.load() / sizeof(Desc);
    if (table_size == 0) throw std::runtime_error("empty indirect table");
    table = reinterpret_cast<const Desc*>(at(mem_.desc[i].addr.load(), table_size * sizeof(Desc)));
    i = 0;
  }
  for (uint32_t steps = 0;; ++steps) {
    if (steps >= table_size || i >= table_size) throw std::runtime_error("descriptor loop");
    const Desc& d = table[i];
    const uint32_t len = d.len.load();
    chain.buffers.push_back(
        DeviceBuffer{at(d.addr.load(), len), len, (d.flags.load() & kDescFlagWrite) != 0});
    if (!(d.flags.load() & kDescFlagNext)) break;
    i = d.next.load();
  }
  return chain;
}

void DeviceModel::push(uint32_t id, uint32_t len) {
  UsedElem& e = mem_.used->ring[used_idx_ % size_];
  e.id.store(id);
  e.len.store(len);
  std::atomic_thread_fence(std::memory_order_release);
  mem_.used->idx.store(++used_idx_);
}

bool DeviceModel::should_interrupt() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const uint16_t old = signalled_used_;
  signalled_used_ = used_idx_;
  if (old == used_idx_) return false;
  if (event_idx_) return need_event(used_event(mem_.avail, size_).load(), used_idx_, old);
  return !(mem_.avail->flags.load() & kAvailFlagNoInterrupt);
}

bool DeviceModel::wants_interrupt() const {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (event_idx_)
    return need_event(used_event(mem_.avail, size_).load(), static_cast<uint16_t>(used_idx_ + 1),
                      used_idx_);
  return !(mem_.avail->flags.load() & kAvailFlagNoInterrupt);
}

void DeviceModel::set_notify_suppressed(bool suppressed) {
  mem_.used->flags.store(suppressed ? kUsedFlagNoNotify : 0);
}

void DeviceModel::set_avail_event(uint16_t idx) { avail_event(mem_.used, size_).store(idx); }

void DeviceModel::force_used_idx(uint16_t idx) {
  std::atomic_thread_fence(std::memory_order_release);
  mem_.used->idx.store(idx);
  used_idx_ = idx;
}

}  // namespace virtiofs::test
