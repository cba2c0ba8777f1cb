// Staging a request into a slot of device memory and copying its reply out: pure work on memory,
// no locks and no ring (the request queue decides when; tests drive it on plain memory).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <system_error>

#include "fs/call.hpp"
#include "fs/chunk_pool.hpp"
#include "virtio/dma_region.hpp"
#include "virtio/split_ring.hpp"

namespace virtiofs::fs {

// Per-slot inline areas: every request's headers, names and link targets fit here, so a typical
// request is two descriptors. Larger payloads spill into chunks.
inline constexpr size_t kInInline = 8192;
inline constexpr size_t kOutInline = 8192;
// Entries of a slot's indirect table: the most segments one request may have (fewer without
// INDIRECT_DESC, where the ring itself bounds a chain; see derive_limits).
inline constexpr unsigned kMaxSegments = 40;

// Who may touch a slot. Exactly one owner at a time: the free list, the device (from add() to
// its used element), or the thread that took that used element, which copies the reply out
// without the queue lock and is the only one that may release the slot. A failure frees only
// what the device holds; a reaper's slot stays the reaper's.
enum class SlotOwner : uint8_t { kFree, kDevice, kReaper };

struct Piece {
  std::byte* ptr;
  uint32_t len;
};

struct Slot {
  std::byte* in_area = nullptr;
  std::byte* out_area = nullptr;
  virtio::IndirectTable indirect{};
  SlotOwner owner = SlotOwner::kFree;
  Call* call = nullptr;  // null once its call was abandoned: the reply is dropped when it comes
  uint64_t unique = 0;
  bool direct = false;   // a payload lies in app memory: the device reads or writes it in place
  bool direct_reply = false;  // the reply's data lands in app memory
  // Kept from the call when it is abandoned, to read its reply's fixed args when it comes.
  uint32_t dropped_opcode = 0, dropped_out_args_len = 0;
  uint64_t dropped_nodeid = 0;
  uint16_t chunk_count = 0;
  uint16_t out_piece_count = 0;
  std::array<uint32_t, kMaxSegments> chunks{};
  std::array<Piece, kMaxSegments> out_pieces{};
};

// What staging a call takes, worked out before anything is written.
struct StagePlan {
  uint32_t chunks = 0;    // pool chunks
  unsigned segments = 0;  // descriptors of the chain (entries of an indirect table)
  bool direct_in = false;   // the last in-payload lies in device memory: its own descriptor
  bool direct_out = false;  // so does the reply's data buffer
  size_t in_bytes = 0, out_bytes = 0;  // bytes written into the slot and chunks
};

class RequestStager {
 public:
  RequestStager(const virtio::DmaRegion& memory, unsigned max_segments)
      : memory_(memory), max_segments_(max_segments) {}

  // Plans `call`; an error when it can never be staged (EINVAL: more segments or chunks than
  // there can ever be; EFAULT: a caller-staged buffer outside device memory).
  std::error_code plan(const Call& call, const ChunkPool& pool, StagePlan& out) const;
  // Writes the request into `slot` (and chunks taken from `pool`) as planned and fills `segs`;
  // returns the segment count (at most plan.segments). Request payload bytes that went as they
  // are are added to zero_copy_bytes (reply bytes are counted as the reply comes).
  unsigned stage(Slot& slot, const Call& call, const StagePlan& plan, uint64_t unique,
                 ChunkPool& pool, std::span<virtio::Segment, kMaxSegments> segs,
                 uint64_t& zero_copy_bytes) const;
  // Copies the reply of a slot the device returned with `used_len` bytes into its Call, reading
  // device memory once, and validates it. True when it is malformed: the device can no longer
  // be trusted.
  static bool copy_reply(const Slot& slot, Call& call, uint32_t used_len);
  // The reply of a slot whose call was abandoned: its header and fixed args are read into
  // `out` and validated, so a device that lies is still caught; variable data is left. True
  // when it is malformed.
  static bool take_dropped_reply(const Slot& slot, uint32_t used_len, DroppedReply& out);

 private:
  const virtio::DmaRegion& memory_;
  unsigned max_segments_;
};

}  // namespace virtiofs::fs
