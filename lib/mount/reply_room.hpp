// Device memory that reply payloads are written into and passed to the kernel as they are.
// The bridge cannot tell a byte the device wrote from one it only claims to have written (its
// used length and out header say how much, nothing proves it), so before such memory is handed
// to the device as reply room it is cleared of whatever an earlier message may have left there
// (another request's file data, another file's attributes, the kernel's WRITE payload). A device
// that over-reports then hands the kernel zeros, never someone else's bytes.
//
// What is cleared is only what a lying device could expose and may not be zero: the first
// min(room, dirty) bytes, where `dirty` bounds the prefix anyone may have written since the last
// clear (the kernel's request payload, and every room handed to the device, which may write all
// of it). Memory that never held anything costs nothing; a room used again costs one memset of
// at most its own size.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace virtiofs::mount {

// Before the device gets [data, data + room) for a reply.
inline void clear_reply_room(std::byte* data, uint32_t& dirty, uint32_t room) {
  std::memset(data, 0, std::min(dirty, room));
  dirty = std::max(dirty, room);
}

// After someone else (the kernel, or the bridge moving a reply) wrote the first `bytes`.
inline void mark_written(uint32_t& dirty, size_t bytes) {
  dirty = std::max(dirty, static_cast<uint32_t>(bytes));
}

}  // namespace virtiofs::mount
