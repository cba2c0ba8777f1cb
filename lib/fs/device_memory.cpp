#include "fs/device_memory.hpp"

#include <algorithm>

namespace virtiofs::fs {

QueueLimits derive_limits(const SessionOptions& options, bool indirect) {
  QueueLimits l;
  l.slots = std::min<unsigned>(options.max_in_flight, options.queue_size);
  l.max_segments = indirect ? kMaxSegments : std::min<unsigned>(kMaxSegments, options.queue_size);
  // A READ or WRITE of max_transfer is the inline area (headers) plus data chunks, and the
  // other direction's inline area: two segments besides the chunks.
  const size_t data_chunks =
      std::min<size_t>(l.max_segments > 2 ? l.max_segments - 2 : 0, options.chunks_per_queue);
  const size_t fit = data_chunks * options.chunk_bytes;
  l.max_transfer = static_cast<uint32_t>(std::min<size_t>(options.max_transfer, fit));
  // Below one page nothing useful fits; one page always does (it fits an inline area).
  l.max_transfer = std::max<uint32_t>(l.max_transfer & ~4095u, 4096);
  return l;
}

SessionMemory carve_session_memory(virtio::Transport& transport, const SessionOptions& options,
                                   const QueueLimits& limits, unsigned queues) {
  using namespace virtio;
  const uint16_t size = options.queue_size;
  const size_t ring_bytes =
      desc_table_bytes(size) + avail_ring_bytes(size) + used_ring_bytes(size) + 3 * 64;
  const size_t slot_bytes = kInInline + kOutInline + kMaxSegments * sizeof(Desc) + 3 * 64;
  const size_t per_queue = ring_bytes + limits.slots * slot_bytes +
                           options.chunks_per_queue * options.chunk_bytes + 4096;
  const size_t staging = (options.staging_bytes + 4095) & ~size_t{4095};
  const size_t app_bytes = (options.app_memory_bytes + 4095) & ~size_t{4095};

  SessionMemory m;
  m.region = transport.allocate_memory(per_queue * queues + staging + app_bytes + 4096,
                                       "virtiofs-rings");
  DmaRegion& r = *m.region;
  if (staging) m.staging = std::span(r.carve(staging, 4096), staging);
  if (app_bytes) m.app = std::span(r.carve(app_bytes, 4096), app_bytes);
  for (unsigned qi = 0; qi < queues; ++qi) {
    QueueMemory q;
    q.ring.desc = reinterpret_cast<Desc*>(r.carve(desc_table_bytes(size), kDescAlign));
    q.ring.avail = reinterpret_cast<AvailRing*>(r.carve(avail_ring_bytes(size), kAvailAlign));
    q.ring.used = reinterpret_cast<UsedRing*>(r.carve(used_ring_bytes(size), 64));
    q.ring.desc_addr = r.device_addr(q.ring.desc);
    q.ring.avail_addr = r.device_addr(q.ring.avail);
    q.ring.used_addr = r.device_addr(q.ring.used);
    q.slots.resize(limits.slots);
    for (Slot& slot : q.slots) {
      slot.in_area = r.carve(kInInline, 64);
      slot.out_area = r.carve(kOutInline, 64);
      auto* table = reinterpret_cast<Desc*>(r.carve(kMaxSegments * sizeof(Desc), 64));
      slot.indirect = IndirectTable{table, r.device_addr(table), kMaxSegments};
    }
    q.chunks = ChunkPool(r.carve(options.chunks_per_queue * options.chunk_bytes, 4096),
                         options.chunk_bytes, options.chunks_per_queue);
    m.queues.push_back(std::move(q));
  }
  return m;
}

}  // namespace virtiofs::fs
