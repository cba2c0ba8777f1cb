// Carving the one region of device memory: per queue its ring, request slots (inline areas and
// an indirect table each) and buffer chunks; then the owner's staging and the app's buffers.
// The limits every other part relies on are derived here, together, from the options.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "fs/request_queue.hpp"
#include "fs/session_options.hpp"
#include "virtio/dma_region.hpp"
#include "virtio/transport.hpp"

namespace virtiofs::fs {

struct QueueLimits {
  unsigned slots = 0;         // request slots per queue
  unsigned max_segments = 0;  // segments of one request: an indirect table's, or the ring's
  uint32_t max_transfer = 0;  // payload bytes per READ/WRITE that fit those segments and chunks
};

// With INDIRECT_DESC a request is one ring descriptor whatever its segment count (a table may be
// longer than the ring: not what virtio 1.x says, but what Linux does and devices take; see
// SplitRing::add); without it, a chain must fit the ring.
QueueLimits derive_limits(const SessionOptions& options, bool indirect);

struct SessionMemory {
  // Shared: the application's buffers (Session::memory_keepalive) may keep it mapped past the
  // session, after the device stopped using it.
  std::shared_ptr<virtio::DmaRegion> region;
  std::span<std::byte> staging;
  std::span<std::byte> app;
  std::vector<QueueMemory> queues;  // [0] = hiprio
};

// Allocates through the transport (which decides how the device addresses it) and carves.
SessionMemory carve_session_memory(virtio::Transport& transport, const SessionOptions& options,
                                   const QueueLimits& limits, unsigned queues);

}  // namespace virtiofs::fs
