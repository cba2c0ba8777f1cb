// libFuzzer: the device writes whatever it likes into the used ring. The input scripts it: chains
// the driver adds, then used entries (id, len) and used-idx moves. The ring must never read or
// free outside its table, and once it says broken it stays broken.
#include <cstdint>
#include <cstring>
#include <vector>

#include "virtio/split_ring.hpp"

using namespace virtiofs::virtio;

namespace {
struct Input {
  const uint8_t* p;
  size_t n;
  template <class T>
  bool take(T& v) {
    if (n < sizeof(T)) return false;
    std::memcpy(&v, p, sizeof(T));
    p += sizeof(T);
    n -= sizeof(T);
    return true;
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{data, size};
  uint8_t config = 0;
  if (!in.take(config)) return 0;
  const uint16_t qsize = static_cast<uint16_t>(2u << (config & 7));  // 2..256
  const bool event_idx = config & 8, indirect = config & 16;
  std::vector<std::byte> mem(desc_table_bytes(qsize) + avail_ring_bytes(qsize) + used_ring_bytes(qsize) + 4096);
  RingMemory rm;
  rm.desc = reinterpret_cast<Desc*>(mem.data());
  rm.avail = reinterpret_cast<AvailRing*>(mem.data() + desc_table_bytes(qsize));
  rm.used = reinterpret_cast<UsedRing*>(mem.data() + ((desc_table_bytes(qsize) + avail_ring_bytes(qsize) + 3) & ~size_t{3}));
  rm.desc_addr = 0x1000;
  rm.avail_addr = 0x2000;
  rm.used_addr = 0x3000;
  SplitRing ring(qsize, rm, event_idx, indirect);
  std::vector<Desc> table(8);
  IndirectTable it{table.data(), 0x9000, 8};

  uint16_t used_idx = 0;
  uint8_t op;
  uint32_t token = 0;
  while (in.take(op)) {
    switch (op % 4) {
      case 0: {  // the driver adds a chain of 1..4 segments, the last writable
        const unsigned n = 1 + (op >> 2) % 4;
        Segment segs[4];
        for (unsigned i = 0; i < n; ++i) segs[i] = {0x10000u + i * 0x1000u, 512, i == n - 1};
        ring.add(std::span(segs, n), token++, indirect ? &it : nullptr);
        ring.kick_prepare();
        break;
      }
      case 1: {  // the device writes a used entry and moves used idx
        uint32_t id = 0, len = 0;
        if (!in.take(id) || !in.take(len)) return 0;
        UsedElem& e = rm.used->ring[used_idx % qsize];
        e.id.store(id);
        e.len.store(len);
        rm.used->idx.store(++used_idx);
        break;
      }
      case 2: {  // the device moves used idx anywhere
        uint16_t idx = 0;
        if (!in.take(idx)) return 0;
        used_idx = idx;
        rm.used->idx.store(idx);
        break;
      }
      default: {  // the driver collects
        UsedElement out[8];
        std::error_code ec;
        const bool was_broken = ring.broken();
        const size_t got = ring.collect_used(out, ec);
        if (was_broken && got != 0) __builtin_trap();  // a broken ring hands out nothing
        if (got > 8 || ring.num_free() > qsize) __builtin_trap();
        if (ec && !ring.broken()) __builtin_trap();
        ring.enable_interrupts();
        break;
      }
    }
  }
  return 0;
}
